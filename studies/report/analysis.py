"""The search phase's evidence, in one call: observed tables (per level over
the trials the searcher chose), modelled tables (global marginals over the
declared space) and importance, each at the rung it was computed on.

The modelled tables and the importance use one rung for every factor: the
deepest rung that still holds 90% of the trials that reported, which under
ASHA is its first rung. Deeper rungs hold only ASHA's survivors, the
searcher's favourite region again; a surrogate fitted there extrapolates over
everything ASHA stopped (seen on benchmarks/known_truth.py's ramp_like under
TPE: fitted at the second rung the forest recovered under 10% of the learning
rate's spread, against ~30% at the first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from studies.report.ablation import AblationResult, asha_rungs, build_ablation, values_at_epoch
from studies.report.importance import param_importances, with_modelled
from studies.report.modelled import ModelledResult, modelled_tables
from studies.runs.trials import RunTrials
from studies.spec.param import Param


@dataclass
class Analysis:
    observed: AblationResult
    modelled: ModelledResult
    importance: pd.DataFrame
    rung: int                  # the modelled tables' and the importance's rung
    at_rung: int               # trials that reached it
    # factor -> (deeper epoch, trials there, spread of its level means there / at ``rung`` over the same trials):
    # factors whose effect grows after the modelled rung (see ``effect_growth``)
    growth: dict[str, tuple[int, int, float]] = field(default_factory=dict)


GROWTH = 2.0      # a factor's level means spreading this much wider at a deeper rung: it acts later
MIN_SURVIVORS = 6


def effect_growth(run: RunTrials, factors: list[Param], bins: dict[str, list[float]], metric: str, rung: int,
                  rungs: list[int]) -> dict[str, tuple[int, int, float]]:
    """Factors whose level means, over the trials that reached the deepest rung
    with at least MIN_SURVIVORS of them, spread at least GROWTH times as wide
    there as at ``rung`` (the same trials at both epochs, so the ratio is
    the change over training, not a change of who is compared). Observed
    evidence about ASHA's survivors, used only to say that the modelled rung
    cannot judge a factor, never for a claim about its levels."""
    from studies.report.ablation import level_labels

    out: dict[str, tuple[int, int, float]] = {}
    deeper = [r for r in rungs if r > rung and len(values_at_epoch(run, metric, r)) >= MIN_SURVIVORS]
    if not deeper:
        return out
    late = values_at_epoch(run, metric, max(deeper))
    early = values_at_epoch(run, metric, rung).reindex(late.index)
    trials = run.trials.set_index("trial_id").reindex(late.index)
    for f in factors:
        if f.name not in trials.columns:
            continue
        labels = level_labels(trials[f.name], f, bins.get(f.name))
        means = pd.DataFrame({"level": labels, "early": early, "late": late}).groupby("level")[["early", "late"]]
        counts = means.size()
        kept = means.mean()[counts >= 2]
        if len(kept) < 2:
            continue
        spread_early, spread_late = float(np.ptp(kept["early"])), float(np.ptp(kept["late"]))
        if spread_late > GROWTH * spread_early:
            out[f.name] = (max(deeper), len(late), spread_late / spread_early if spread_early > 0 else math.inf)
    return out


def modelled_rung(counts: dict[int, int]) -> int:
    """The deepest rung still holding 90% of the trials (ASHA's first rung, unless it stopped few)."""
    most = max(counts.values()) if counts else 0
    need = max(min(most, 10), math.ceil(0.9 * most))
    reached = [r for r, n in counts.items() if n >= need and n > 0]
    return max(reached) if reached else min(counts)


def configs_at(run: RunTrials, values: pd.Series, names: list[str]) -> pd.DataFrame:
    trials = run.trials.set_index("trial_id")
    cols = [n for n in names if n in trials.columns]
    out = trials.reindex(values.index)[cols].copy()
    for n in names:
        if n not in out.columns:
            out[n] = None
    return out[names]


def analyse(
    run: RunTrials,
    factors: list[Param],
    *,
    space: list[Param] | None = None,
    metric: str,
    mode: str,
    baseline: dict[str, Any],
    bins: dict[str, list[float]],
    max_epochs: int,
    grace_period: int,
    reduction_factor: float,
    seed: int = 0,
    n_boot: int | None = None,
    observed: AblationResult | None = None,
    scale: str = "interval",
) -> Analysis:
    """``factors``: the ablation's factors; ``space``: every declared parameter
    (what the surrogate sees and averages over; defaults to ``factors``).
    ``scale``: the metric's scale; a ratio-scale metric is modelled on the log scale."""
    space = space or factors
    observed = observed or build_ablation(run, metric=metric, mode=mode, factors=factors, baseline=baseline, bins=bins,
                              max_epochs=max_epochs, grace_period=grace_period, reduction_factor=reduction_factor)
    rungs = asha_rungs(max_epochs, grace_period, reduction_factor)
    counts = {r: len(values_at_epoch(run, metric, r)) for r in rungs}
    rung = modelled_rung(counts)
    values = values_at_epoch(run, metric, rung)
    configs = configs_at(run, values, list(dict.fromkeys([f.name for f in space] + list(run.params))))
    kw: dict[str, Any] = {} if n_boot is None else {"n_boot": n_boot}
    modelled = modelled_tables(configs, values, factors, space=space, baseline=baseline, bins=bins, mode=mode,
                               rung=rung, seed=seed, log_scale=scale == "ratio", **kw)
    importance = param_importances(configs, values, space, mode=mode, seed=seed)
    importance = with_modelled(importance, {t.factor: float(np.var(t.table["marginal"].to_numpy()))
                                            for t in modelled.tables})
    if not modelled.importance.empty:   # the modelled variance's bootstrap interval, and how often it ranks first
        boot = modelled.importance.set_index("factor")
        at = importance.columns.get_loc("modelled_share") + 1
        for offset, (name, column) in enumerate((("modelled_lo", "lo"), ("modelled_hi", "hi"),
                                                 ("modelled_first", "first"))):
            importance.insert(at + offset, name, importance["parameter"].map(boot[column]).astype(float))
    growth = effect_growth(run, factors, bins, metric, rung, rungs)
    return Analysis(observed, modelled, importance, rung, len(values), growth)
