"""Screening evidence: the design trials (``search.startup: design``) at the
first ASHA rung, analysed as the designed experiment they are (Ray-free).

Why a separate table: the design's rows were laid out before any result was
seen (studies/spec/screening_design.py), every factor's levels equally often and
every pair of factors as balanced as the size allows, so a level's effect is
compared with every other factor averaged over the same declared space: a
global claim, not one about the region TPE liked. All of them reach the first
rung (ASHA stops trials only there), so that is where they are compared.

Statistics (for the captions): one ordinary least-squares fit of the metric
at the rung on every factor's main effects at once (treatment coding against
each factor's reference level; a conditional factor's effects only where it
is active). With a balanced design the effects are estimable and nearly
uncorrelated. Each level's mean is its least-squares mean: the fit's
prediction with the factor at that level, averaged over the design's rows
(over the rows where the factor is active, for a conditional one; a parent
set to a level that switches a child on averages that child's levels
equally). Intervals: 95% t-intervals from the residual variance (df = rows -
parameters); each level against the reference by a two-sided t-test, p-values
Holm-corrected within the factor's table, ``*`` p_holm < 0.05, ``**`` < 0.01,
and the difference's interval taken at the level Holm tested it at (so a mark
and an interval that excludes 0 go together), as in the modelled tables.
Interactions are not in the model: they land in the residual variance, which
makes the intervals wider, not wrong (in a balanced design a pair's
interaction is orthogonal to both main effects).

When the design has fewer rows than the model has parameters (its size was
capped at half of num_samples), there is no residual variance: each factor is
then tabulated on its own (``LEVEL_MEANS``), each level's plain mean over the
design rows at it with a t-interval from their spread, Welch's t-test against
the reference, Holm within the table. Valid because the design balances the
other factors over each level; wider, because their effects count as noise.

Importance: each factor's main-effect variance, the variance of its levels'
least-squares means (levels weighted equally), with a 95% percentile interval
from a residual bootstrap (the design's rows kept, the fit's residuals,
scaled by sqrt(n / df), resampled onto its fitted values and the model
refitted), and the share of resamples in which it ranks first. Why not
resampling the rows themselves: a design has few rows per parameter (36 rows
for ramp_like's 20), and a resample of them repeats some and drops others,
which breaks the balance the estimates rest on; on ramp_like its refits were
near-singular and its intervals spanned 100 times the point estimate. The
rows were fixed by the design, not drawn, so the bootstrap keeps them fixed.
A null factor's variance is not 0 but about the noise of its level means:
read the interval and the tables' tests, not the point, for "does it matter".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from studies.report.ablation import holm, reference_of_levels, values_at_epoch
from studies.runs.trials import RunTrials, config_keys
from studies.spec.levels import level_name
from studies.spec.param import Param
from studies.spec.screening_design import Level, factor_levels

ALPHA = 0.05
N_BOOT = 200
MAIN_EFFECTS = "main effects"   # one least-squares fit of every factor's main effects
LEVEL_MEANS = "level means"     # each factor alone: too few rows for the model (a design capped below its size)
TABLE_COLUMNS = ["level", "trials", "mean", "lo", "hi", "delta", "delta_lo", "delta_hi", "p", "p_holm", "sig"]


@dataclass
class ScreeningTable:
    factor: str
    table: pd.DataFrame        # TABLE_COLUMNS: one row per level, in declared order; "trials": design trials at it
    reference: str             # the level every other level is compared with
    reference_why: str         # "baseline in the spec", ...
    scope: str                 # "all design trials" or the condition under which the factor is active
    n_active: int              # design trials (at the rung) where the factor is active


@dataclass
class ScreeningResult:
    metric: str
    mode: str
    rung: int                  # the epoch the values come from (the first ASHA rung)
    n_design: int              # rows of the design
    n_found: int               # design rows that a trial of the run measured
    n_at_rung: int             # of those, trials with a value at the rung: the fit's observations
    trial_ids: list[str]       # those trials
    residual_df: int           # n_at_rung - estimated parameters; 0: no intervals
    sigma: float               # residual standard deviation
    tables: list[ScreeningTable]
    importance: pd.DataFrame   # factor, variance, lo, hi, first_share (sorted by variance, largest first)
    n_boot: int                # bootstrap resamples behind the importance intervals
    method: str = "main effects"   # MAIN_EFFECTS, or LEVEL_MEANS when the rows are fewer than the model's parameters


def design_trial_ids(run: RunTrials, params: list[Param], design: list[dict[str, Any]]) -> list[str]:
    """Trial ids of the run's trials that measured a design row: the same
    parameter values (inactive ones absent), and where Optuna's trial number
    is known, one of 1..N (trial 0 is the reference point). Each row once."""
    trials = run.trials
    if trials.empty or not design:
        return []
    names = [p.name for p in params]
    have = trials.reindex(columns=names)
    keys = config_keys(have.astype(object).where(have.notna(), None), names)
    wanted = config_keys(pd.DataFrame([{n: row.get(n) for n in names} for row in design], columns=names), names)
    remaining = dict.fromkeys(wanted.tolist(), 0)
    for k in wanted:
        remaining[k] += 1
    number = pd.to_numeric(trials["optuna_number"], errors="coerce") if "optuna_number" in trials else \
        pd.Series(np.nan, index=trials.index)
    out = []
    for i in trials.index:
        k = keys[i]
        n = number[i]
        if remaining.get(k, 0) > 0 and (math.isnan(n) or 1 <= n <= len(design)):
            remaining[k] -= 1
            out.append(str(trials.at[i, "trial_id"]))
    return out


def screening_tables(
    run: RunTrials,
    params: list[Param],
    *,
    design: list[dict[str, Any]],
    bins: dict[str, list[float]],
    baseline: dict[str, Any],
    metric: str,
    mode: str,
    rung: int,
    factors: list[str] | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> ScreeningResult | None:
    """The screening tables of ``factors`` (default: every declared parameter;
    the model always holds every one). ``design``: the rows the run enqueued
    (``studies.spec.screening_design.spec_design(spec)``). None when the run has no
    design trial with a value at ``rung``."""
    space = [p for p in params if p.declared]
    ids = design_trial_ids(run, space, design)
    if not ids:
        return None
    values = values_at_epoch(run, metric, rung).reindex(ids).dropna()
    if values.empty:
        return None
    configs = run.trials.set_index("trial_id").reindex(values.index).reindex(columns=[p.name for p in space])
    levels = {p.name: factor_levels(p, bins.get(p.name)) for p in space}
    model = _Model(space, levels, configs, baseline)
    y = values.to_numpy(float)
    fit = model.fit(y)
    wanted = [p for p in space if factors is None or p.name in factors]
    if fit.df >= 1:
        tables = [model.table(p, fit) for p in wanted]
        importance, used = model.importance(y, fit, wanted, seed=seed, n_boot=n_boot)
    else:   # fewer rows than the model's parameters: no error variance, so each factor on its own
        tables = [model.level_means_table(p, y) for p in wanted]
        importance, used = model.level_means_importance(y, wanted, seed=seed, n_boot=n_boot)
    return ScreeningResult(metric=metric, mode=mode, rung=rung, n_design=len(design), n_found=len(ids),
                           n_at_rung=len(values), trial_ids=[str(i) for i in values.index], residual_df=fit.df,
                           sigma=math.sqrt(fit.sigma2) if fit.df > 0 else math.nan, tables=tables,
                           importance=importance, n_boot=used,
                           method=MAIN_EFFECTS if fit.df >= 1 else LEVEL_MEANS)


# ------------------------------------------------------------------ the model

@dataclass
class _Fit:
    beta: np.ndarray
    cov: np.ndarray            # sigma^2 (X'X)^+ ; NaN without residual df
    df: int
    sigma2: float
    rank: int


def _level_of(p: Param, levels: list[Level], value: Any) -> int:
    """The index of the level that holds a value; -1 when inactive or in none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -1
    for i, lv in enumerate(levels):
        if lv.within is None:
            if level_name(lv.fixed) == level_name(value) or _same(lv.fixed, value):
                return i
            continue
        lo, hi, closed = lv.within
        try:
            x = float(value)
        except (TypeError, ValueError):
            return -1
        if lo <= x < hi or (closed and x == hi):
            return i
    return -1


def _same(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


class _Model:
    """Main effects of every factor, treatment-coded against each factor's reference level."""

    def __init__(self, space: list[Param], levels: dict[str, list[Level]], configs: pd.DataFrame,
                 baseline: dict[str, Any]):
        self.space, self.levels, self.baseline = space, levels, baseline
        self.refs: dict[str, tuple[int, str, str]] = {}
        self.columns: dict[str, list[int]] = {}            # factor -> the model column of each level (-1: reference)
        width = 1
        for p in space:
            labels = [lv.label for lv in levels[p.name]]
            ref, why = reference_of_levels(p, labels, baseline) if labels else ("", "no levels")
            r = labels.index(ref) if ref in labels else 0
            self.refs[p.name] = (r, ref, why)
            self.columns[p.name] = []
            for i in range(len(labels)):
                if i == r:
                    self.columns[p.name].append(-1)
                else:
                    self.columns[p.name].append(width)
                    width += 1
        self.width = width
        self.configs = configs.reset_index(drop=True)
        self.codes = {p.name: np.array([_level_of(p, levels[p.name], v) for v in self.configs[p.name]])
                      for p in space}
        self.X = self._encode(self.codes)

    def _encode(self, codes: dict[str, np.ndarray], uniform: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Rows of level codes -> the design matrix; ``uniform`` marks rows where a
        factor counts as each of its levels equally (a child a parent switched on)."""
        n = len(next(iter(codes.values()))) if codes else 0
        X = np.zeros((n, self.width))
        X[:, 0] = 1.0
        for p in self.space:
            c = codes[p.name]
            for i, col in enumerate(self.columns[p.name]):
                if col >= 0:
                    X[:, col] = (c == i)
            if uniform is not None and p.name in uniform:
                m = len(self.levels[p.name])
                for col in self.columns[p.name]:
                    if col >= 0:
                        X[uniform[p.name], col] = 1.0 / m
        return X

    def fit(self, y: np.ndarray, X: np.ndarray | None = None) -> _Fit:
        X = self.X if X is None else X
        pinv = np.linalg.pinv(X)
        beta = pinv @ y
        rank = int(np.linalg.matrix_rank(X))
        df = len(y) - rank
        sigma2 = float(np.sum((y - X @ beta) ** 2) / df) if df > 0 else math.nan
        return _Fit(beta, sigma2 * (pinv @ pinv.T), df, sigma2, rank)

    def _counterfactual(self, p: Param, level: int) -> np.ndarray:
        """The mean design-matrix row with ``p`` at ``level``, over the rows where
        ``p`` is active: the contrast whose estimate is the level's least-squares mean."""
        rows = np.flatnonzero(self.codes[p.name] >= 0)
        codes = {q.name: self.codes[q.name][rows].copy() for q in self.space}
        codes[p.name][:] = level
        uniform: dict[str, np.ndarray] = {}
        raw = self.configs.iloc[rows].reset_index(drop=True)
        after = self.space[self.space.index(p) + 1:]
        for q in after:   # a child of p: on where its conditions now hold, at its own level or all equally
            if not q.when:
                continue
            on = np.array([q.active(self._values(codes, uniform, raw, r)) for r in range(len(rows))], dtype=bool)
            uniform[q.name] = on & (codes[q.name] < 0)
            codes[q.name][~on] = -1
        return self._encode(codes, uniform).mean(axis=0)

    def _values(self, codes: dict[str, np.ndarray], uniform: dict[str, np.ndarray], raw: pd.DataFrame,
                r: int) -> dict[str, Any]:
        """One row's values as ``Param.active`` reads them (a fixed level's value, a bin's own trial value)."""
        out: dict[str, Any] = {}
        for q in self.space:
            c = codes[q.name][r]
            if c < 0 or (q.name in uniform and uniform[q.name][r]):
                continue
            lv = self.levels[q.name][c]
            out[q.name] = lv.fixed if lv.within is None else raw[q.name].iloc[r]
        return out

    def contrasts(self, p: Param) -> np.ndarray:
        """One row per level of ``p``: its least-squares-mean contrast."""
        if not hasattr(self, "_contrasts"):
            self._contrasts: dict[str, np.ndarray] = {}
        if p.name not in self._contrasts:
            m = len(self.levels[p.name])
            self._contrasts[p.name] = (np.vstack([self._counterfactual(p, i) for i in range(m)]) if m
                                       and (self.codes[p.name] >= 0).any() else np.zeros((0, self.width)))
        return self._contrasts[p.name]

    def _estimable(self, L: np.ndarray) -> np.ndarray:
        """Per contrast row: is it in the row space of X (so the data determine it)?"""
        if not len(L):
            return np.zeros(0, dtype=bool)
        proj = L @ np.linalg.pinv(self.X) @ self.X
        return np.all(np.abs(proj - L) < 1e-7 * max(1.0, float(np.abs(L).max())), axis=1)

    def table(self, p: Param, fit: _Fit) -> ScreeningTable:
        from studies.report.modelled import holm_levels

        L = self.contrasts(p)
        r, ref, why = self.refs[p.name]
        labels = [lv.label for lv in self.levels[p.name]]
        counts = [int(np.sum(self.codes[p.name] == i)) for i in range(len(labels))]
        ok = self._estimable(L)
        t95 = stats.t.ppf(1 - ALPHA / 2, fit.df) if fit.df > 0 else math.nan
        rows, pvals, diffs = [], [], []
        for i, label in enumerate(labels):
            est = float(L[i] @ fit.beta) if ok[i] else math.nan
            se = math.sqrt(max(float(L[i] @ fit.cov @ L[i]), 0.0)) if ok[i] and fit.df > 0 else math.nan
            rows.append({"level": label + (" (ref)" if i == r else ""), "trials": counts[i], "mean": est,
                         "lo": est - t95 * se, "hi": est + t95 * se})
            d = L[i] - L[r]
            if i == r or not (ok[i] and ok[r]):
                diffs.append((math.nan, math.nan))
                pvals.append(math.nan)
                continue
            delta = float(d @ fit.beta)
            dse = math.sqrt(max(float(d @ fit.cov @ d), 0.0)) if fit.df > 0 else math.nan
            diffs.append((delta, dse))
            pvals.append(float(2 * stats.t.sf(abs(delta) / dse, fit.df)) if dse > 0 else
                         (math.nan if math.isnan(dse) else (1.0 if delta == 0 else 0.0)))
        held = holm_levels(pvals, ALPHA)
        adjusted = holm(pvals)
        for row, (delta, dse), level, p_raw, p_adj in zip(rows, diffs, held, pvals, adjusted):
            q = stats.t.ppf(1 - level / 2, fit.df) if fit.df > 0 and not math.isnan(level) else math.nan
            row.update({"delta": delta, "delta_lo": delta - q * dse, "delta_hi": delta + q * dse, "p": p_raw,
                        "p_holm": p_adj,
                        "sig": "" if math.isnan(p_adj) else "**" if p_adj < 0.01 else "*" if p_adj < ALPHA else ""})
        return ScreeningTable(p.name, pd.DataFrame(rows, columns=TABLE_COLUMNS), ref, why, _scope(p),
                              int(np.sum(self.codes[p.name] >= 0)))

    def importance(self, y: np.ndarray, fit: _Fit, factors: list[Param], *, seed: int,
                   n_boot: int) -> tuple[pd.DataFrame, int]:
        """Each factor's main-effect variance, its bootstrap interval and how often it ranks first."""
        Ls = {p.name: self.contrasts(p) for p in factors}
        usable = [p for p in factors if len(Ls[p.name]) >= 2 and self._estimable(Ls[p.name]).all()]

        def variances(beta: np.ndarray) -> np.ndarray:
            return np.array([float(np.var(Ls[p.name] @ beta)) for p in usable])

        point = variances(fit.beta)
        rng = np.random.default_rng(seed)
        fitted = self.X @ fit.beta
        residual = (y - fitted) * math.sqrt(len(y) / fit.df) if fit.df > 0 else np.zeros(0)
        pinv = np.linalg.pinv(self.X)
        boot = [variances(pinv @ (fitted + rng.choice(residual, len(y))))
                for _ in range(n_boot if usable and len(residual) else 0)]
        B = np.array(boot) if boot else np.full((0, len(usable)), np.nan)
        return _importance_table(usable, point, B), len(boot)

    def level_means_table(self, p: Param, y: np.ndarray) -> ScreeningTable:
        """``LEVEL_MEANS``: one factor on its own, over the design rows where it is active."""
        from studies.report.modelled import holm_levels

        r, ref, why = self.refs[p.name]
        codes = self.codes[p.name]
        labels = [lv.label for lv in self.levels[p.name]]
        groups = [y[codes == i] for i in range(len(labels))]
        rows, pvals, tests = [], [], []
        for i, (label, x) in enumerate(zip(labels, groups)):
            mean = float(x.mean()) if len(x) else math.nan
            half = float(stats.t.ppf(1 - ALPHA / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))) if len(x) >= 2 \
                else math.nan
            rows.append({"level": label + (" (ref)" if i == r else ""), "trials": len(x), "mean": mean,
                         "lo": mean - half, "hi": mean + half})
            ref_x = groups[r]
            if i == r or len(x) < 2 or len(ref_x) < 2:
                tests.append((math.nan, math.nan, math.nan))
                pvals.append(math.nan)
                continue
            va, vb = x.var(ddof=1) / len(x), ref_x.var(ddof=1) / len(ref_x)
            se = math.sqrt(va + vb)
            df = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(ref_x) - 1)) if se > 0 else math.inf
            delta = mean - float(ref_x.mean())
            tests.append((delta, se, df))
            pvals.append(float(2 * stats.t.sf(abs(delta) / se, df)) if se > 0 else (1.0 if delta == 0 else 0.0))
        for row, (delta, se, df), level, p_raw, p_adj in zip(rows, tests, holm_levels(pvals, ALPHA), pvals, holm(pvals)):
            q = stats.t.ppf(1 - level / 2, df) if not math.isnan(level) and not math.isnan(df) else math.nan
            row.update({"delta": delta, "delta_lo": delta - q * se, "delta_hi": delta + q * se, "p": p_raw,
                        "p_holm": p_adj,
                        "sig": "" if math.isnan(p_adj) else "**" if p_adj < 0.01 else "*" if p_adj < ALPHA else ""})
        return ScreeningTable(p.name, pd.DataFrame(rows, columns=TABLE_COLUMNS), ref, why, _scope(p), int(np.sum(codes >= 0)))

    def level_means_importance(self, y: np.ndarray, factors: list[Param], *, seed: int,
                               n_boot: int) -> tuple[pd.DataFrame, int]:
        """``LEVEL_MEANS``: the variance of each factor's level means; a pairs bootstrap
        of the design rows (no model to break here), a level a resample misses left out."""
        usable = [p for p in factors if len({int(c) for c in self.codes[p.name] if c >= 0}) >= 2]

        def variances(idx: np.ndarray) -> np.ndarray:
            out = []
            for p in usable:
                codes, yy = self.codes[p.name][idx], y[idx]
                means = [yy[codes == i].mean() for i in range(len(self.levels[p.name])) if np.any(codes == i)]
                out.append(float(np.var(means)) if len(means) >= 2 else math.nan)
            return np.array(out)

        point = variances(np.arange(len(y)))
        rng = np.random.default_rng(seed)
        B = np.array([variances(rng.integers(0, len(y), len(y))) for _ in range(n_boot if usable else 0)])
        return _importance_table(usable, point, B), len(B)


def _importance_table(factors: list[Param], point: np.ndarray, boot: np.ndarray) -> pd.DataFrame:
    """factor, variance, its 95% percentile interval over ``boot`` (one row per
    resample) and the share of resamples ranking it first; largest first."""
    rows = []
    ranked = np.nan_to_num(boot, nan=-np.inf) if len(boot) else boot
    for j, p in enumerate(factors):
        col = boot[:, j][np.isfinite(boot[:, j])] if len(boot) else np.zeros(0)
        lo, hi = np.percentile(col, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)]) if len(col) else (math.nan, math.nan)
        first = float(np.mean(np.argmax(ranked, axis=1) == j)) if len(boot) else math.nan
        rows.append({"factor": p.name, "variance": point[j], "lo": float(lo), "hi": float(hi), "first_share": first})
    table = pd.DataFrame(rows, columns=["factor", "variance", "lo", "hi", "first_share"])
    return table.sort_values("variance", ascending=False, kind="stable").reset_index(drop=True)


def _scope(p: Param) -> str:
    if not p.when:
        return "all design trials"
    return "design trials where " + " and ".join(f"{dep} in {{{', '.join(map(str, allowed))}}}"
                                                for dep, allowed in p.when.items())
