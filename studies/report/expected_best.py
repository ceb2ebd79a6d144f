"""Expected best value versus the number of trials (Dodge et al., EMNLP 2019),
with the unbiased estimator of Tang et al. (2020) and a bootstrap band.

For N trials with values sorted from worst to best, v_(1) .. v_(N), the best
of n trials drawn without replacement from them is v_(i) with probability
C(i-1, n-1) / C(N, n): the estimate at n is the average of the best over every
subset of n of the N trials, unbiased for a search of n trials drawn like
these (Dodge's with-replacement formula is biased towards the single best
trial as n approaches N). The band: the same curve over bootstrap resamples of
the trials (percentiles), so it shows how much the curve itself could move.

What it is not: TPE chose these trials one after another, learning from the
earlier ones, so the curve is that of n trials drawn from the distribution
this search ended up sampling, not what a fresh TPE search of n trials would
find. Each trial counts with its value at the full budget (the value the
study reports as its best) where enough trials ran it, else at the first ASHA
rung, which every trial reached: values of one budget, never a stopped
trial's early value beside a finished trial's last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import gammaln

from studies.spec.direction import Direction

N_BOOT = 1000


def _weights(big: int, ns: np.ndarray) -> np.ndarray:
    """Row k: the probability that the best of ``ns[k]`` trials drawn without
    replacement from ``big`` is the i-th worst, C(i-1, n-1) / C(N, n)."""
    i = np.arange(1, big + 1)[None, :]
    n = ns[:, None].astype(float)
    log_w = (gammaln(i) - gammaln(n) - gammaln(np.maximum(i - n, 0) + 1)) - (
        gammaln(big + 1) - gammaln(n + 1) - gammaln(big - n + 1))
    w = np.where(i >= n, np.exp(log_w), 0.0)
    return w / w.sum(axis=1, keepdims=True)   # each row sums to 1; dividing absorbs rounding


def _worst_first(v: np.ndarray, mode: str) -> np.ndarray:
    return np.sort(v, axis=-1) if mode == "max" else -np.sort(-v, axis=-1)


def expected_best(values: np.ndarray, n: int, mode: str) -> float:
    """Unbiased expected best of ``n`` trials drawn without replacement from the finite ``values``."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not 1 <= n <= len(v):
        raise ValueError(f"n must be in 1..{len(v)}, not {n}")
    return float(_weights(len(v), np.array([n]))[0] @ _worst_first(v, mode))


@dataclass
class ExpectedBest:
    metric: str
    mode: str
    n_trials: int
    curve: pd.DataFrame   # n, expected_best, lo, hi (95% bootstrap band)

    def at(self, n: int) -> float:
        return float(self.curve.loc[self.curve["n"] == n, "expected_best"].iloc[0])


def _sizes(big: int) -> np.ndarray:
    """Every n up to 100 trials; beyond, about 100 sizes spread on a log scale, N included."""
    if big <= 100:
        return np.arange(1, big + 1)
    grid = np.unique(np.round(np.geomspace(1, big, 100)).astype(int))
    return np.unique(np.concatenate([grid, [n for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if n < big], [big]]))


def expected_best_curve(values: np.ndarray, metric: str, mode: str, *, seed: int = 0, n_boot: int = N_BOOT) -> ExpectedBest | None:
    """The curve over the finite ``values`` (every n up to 100 trials, then a log
    grid); None with fewer than 2."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return None
    ns = _sizes(len(v))
    w = _weights(len(v), ns)
    point = w @ _worst_first(v, mode)
    rng = np.random.default_rng(seed)
    boots = []
    for chunk in np.array_split(np.arange(n_boot), max(1, n_boot * len(v) // 2_000_000)):   # bounded memory
        samples = v[rng.integers(0, len(v), size=(len(chunk), len(v)))]
        boots.append(_worst_first(samples, mode) @ w.T)
    lo, hi = np.percentile(np.vstack(boots), [2.5, 97.5], axis=0)
    return ExpectedBest(metric, mode, len(v), pd.DataFrame({"n": ns, "expected_best": point, "lo": lo, "hi": hi}))


def table_rows(eb: ExpectedBest) -> pd.DataFrame:
    """The curve at a few search sizes (1, 2, 5, 10, 20, 50, ... and N)."""
    steps = [n for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if n < eb.n_trials] + [eb.n_trials]
    return eb.curve[eb.curve["n"].isin(steps)].reset_index(drop=True)


def caption(eb: ExpectedBest, what: str) -> str:
    """``what``: which value of each trial the curve is over (e.g. "at the full budget (18 epochs)")."""
    word = Direction(eb.mode).word
    return (f"Expected best {eb.metric} ({word} is better) of a search of n trials, {what}, estimated from this "
            f"run's {eb.n_trials} such trials, unbiased (Tang et al. 2020; the curve of Dodge et al. 2019); lo, hi: 95% "
            f"bootstrap band over {N_BOOT} resamples of the trials. The trials are those this search chose, so the "
            "curve is for n trials drawn like these, not a fresh search of n.")


def sentence(eb: ExpectedBest) -> str:
    """What half the trials would be expected to find, against all of them (facts of the curve, no verdict)."""
    half = max(1, eb.n_trials // 2)
    row = eb.curve[eb.curve["n"] == half].iloc[0]
    return (f"A search of {half} trials drawn like these would be expected to find {eb.metric} "
            f"{row['expected_best']:.4g} (95% band {row['lo']:.4g} to {row['hi']:.4g}); all {eb.n_trials} found "
            f"{eb.at(eb.n_trials):.4g}.")


def plot_expected_best(eb: ExpectedBest, out: Path) -> Path:
    """The curve with its band, and a mark at every trial count of the run's table."""
    from studies.report.plots import _save, _subplots

    fig, ax = _subplots(figsize=(6, 3.6))
    c = eb.curve
    ax.fill_between(c["n"], c["lo"], c["hi"], color="C0", alpha=0.2, label="95% bootstrap band")
    ax.plot(c["n"], c["expected_best"], color="C0", marker="o" if len(c) <= 30 else None, ms=3,
            label="expected best (unbiased)")
    ax.set_xscale("log" if eb.n_trials > 30 else "linear")
    ax.set_xlabel("trials in the search (n)")
    ax.set_ylabel(f"expected best {eb.metric}")
    ax.set_title(f"Expected best {eb.metric} of a search of n trials ({Direction(eb.mode).word} is better)", fontsize=10)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "expected_best.png")
