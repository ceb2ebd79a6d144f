"""Ablation tables: one row per level of each factor, compared at one ASHA rung.

Comparing like with like: ASHA compares trials at its rungs (grace_period x
reduction_factor^k epochs), so the tables do too. Every trial that reached
a factor's rung contributes its metric *at that epoch*; a trial stopped at
epoch 2 is never compared with one that ran 18 epochs. Each factor's table
uses the deepest rung at which its reference level and at least one other
level still have two trials or more (deeper rungs hold only ASHA's survivors,
so a reference that ASHA stopped early is compared where it still ran); the
caption says which rung and how many trials reached it.

Statistics (stated in every caption): mean with a 95% t-interval; each level
against the reference level by a two-sided Mann-Whitney U test (no normality
assumption; ASHA's survivors are not normal); p-values Holm-corrected within
each factor's table; ``*`` p_adj < 0.05, ``**`` p_adj < 0.01.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from studies.runs.trials import RunTrials, config_keys
from studies.spec.direction import Direction
from studies.spec.levels import bin_labels, declared_edges, level_name, nice_edges, outward
from studies.spec.param import Param
from studies.spec.rungs import Rungs

NOT_SAMPLED = "(not sampled)"
ALPHA = 0.05


@dataclass
class FactorTable:
    factor: str
    table: pd.DataFrame          # one row per level
    reference: str               # the level every other level is compared with
    reference_why: str           # "baseline in the spec", ...
    rung: int = 0                # the epoch the figures come from
    at_rung: int = 0             # trials (any level) that reached it


@dataclass
class AblationResult:
    metric: str
    mode: str
    rung: int
    rungs: dict[int, int]        # rung epoch -> trials that reached it
    n_trials: int
    max_epochs: int
    tables: list[FactorTable]
    values: pd.Series            # metric at the overall rung, by trial_id


def asha_rungs(max_epochs: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The epochs the report tabulates: those at which Ray's ASHA decides
    (``studies.spec.rungs.Rungs.epochs``, fractional factors included) and the full budget."""
    return Rungs(grace_period, reduction_factor, max_epochs).report_epochs


def values_at_epoch(run: RunTrials, metric: str, epoch: int) -> pd.Series:
    h = run.history
    if h.empty or metric not in h.columns:
        return pd.Series(dtype=float, name=metric)
    at = h[(h["epoch"] == epoch) & np.isfinite(h[metric].astype(float))]
    return at.set_index("trial_id")[metric].astype(float)


def choose_rung(run: RunTrials, metric: str, rungs: list[int], *, min_trials: int = 8) -> tuple[int, dict[int, int]]:
    """The deepest rung reached by at least ``max(4, min(min_trials, 25% of trials))`` trials."""
    counts = {r: len(values_at_epoch(run, metric, r)) for r in rungs}
    n = len(run.trials)
    need = max(min(4, n), min(min_trials, math.ceil(0.25 * n)))
    reached = [r for r in rungs if counts[r] >= need and counts[r] > 0]
    if reached:
        return max(reached), counts
    nonempty = [r for r in rungs if counts[r] > 0]
    return (nonempty[0] if nonempty else rungs[0]), counts


def level_labels(values: pd.Series, info: Param, edges: list[float] | None = None) -> pd.Series:
    """Map each trial's parameter value to a readable level (categorical as is,
    numbers binned: the spec's edges, else the declared range's bins, else
    quantiles of what was sampled; trials where the parameter was inactive get
    NOT_SAMPLED)."""
    active = values.dropna()
    labels = pd.Series(NOT_SAMPLED, index=values.index, dtype=object)
    if active.empty:
        return labels
    numeric = info.type in ("float", "int")
    if not numeric or (info.type == "int" and (active.nunique() <= 6 if info.low is None or info.high is None else info.high - info.low <= 5) and not edges):
        labels.loc[active.index] = active.map(level_name)
        return labels
    if not info.declared and not edges and active.nunique() <= 3:
        labels.loc[active.index] = active.map(level_name)
        return labels
    x = active.astype(float)
    if edges is None and info.declared:
        edges = declared_edges(info)
    if edges is None:
        n_bins = 3 if len(x) < 30 else 4
        q = np.quantile(np.log(x) if info.log else x, np.linspace(0, 1, n_bins + 1))
        q = np.exp(q) if info.log else q
        inner = sorted(set(float(e) for e in q[1:-1]))
        edges = nice_edges([float(x.min()), *inner, float(x.max())])
        edges[0], edges[-1] = outward(float(x.min()), edges[0], down=True), outward(float(x.max()), edges[-1], down=False)
    edges = sorted(set(edges))
    cut = pd.cut(x, bins=edges, include_lowest=True, right=False)
    cut_last = pd.cut(x, bins=edges, include_lowest=True, right=True)
    names = bin_labels(edges, info.log)
    codes = cut.cat.codes.where(cut.cat.codes >= 0, cut_last.cat.codes)
    out_of_range = codes < 0
    labels.loc[x.index] = [names[c] if c >= 0 else "out of bins" for c in codes]
    if out_of_range.any():
        labels.loc[x.index[out_of_range]] = "out of bins"
    return labels


def _level_order(labels: pd.Series, info: Param) -> list[str]:
    present = list(dict.fromkeys(labels))
    if info.type == "categorical":
        order = [level_name(c) for c in info.choices]
    else:
        def key(s: str) -> float:
            try:
                return float(s.strip("[(").split(",")[0])
            except ValueError:
                return math.inf
        order = sorted((s for s in present if s not in (NOT_SAMPLED, "out of bins")), key=key)
    order = [s for s in order if s in present] + [s for s in (NOT_SAMPLED, "out of bins") if s in present]
    return order + [s for s in present if s not in order]


def _bin_bounds(label: str) -> tuple[float, float, bool] | None:
    """``[lo, hi)`` -> (lo, hi, False); ``[lo, hi]`` -> (lo, hi, True); None for other labels."""
    if not (label.startswith("[") and label.endswith(("]", ")"))):
        return None
    try:
        lo, hi = (float(v) for v in label[1:-1].split(","))
    except ValueError:
        return None
    return lo, hi, label.endswith("]")


def _holding_bin(value: Any, labels: list[str]) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    for label in labels:  # a numeric baseline: the bin that holds it
        bounds = _bin_bounds(label)
        if bounds and (bounds[0] <= float(value) < bounds[1] or (bounds[2] and float(value) == bounds[1])):
            return label
    return None


def reference_of_levels(info: Param, levels: list[str], baseline: dict[str, Any]) -> tuple[str, str]:
    """The level every other level is compared with, and why: the spec's
    baseline (its level, or the bin that holds it), else the first level (a
    numeric factor's lowest bin). A conditional factor whose parent's baseline
    switches it off is still compared bin with bin, from its lowest bin: the
    parent's own table holds the "switched off" comparison."""
    sampled = [lv for lv in levels if lv not in (NOT_SAMPLED, "out of bins")]
    if info.name in baseline:
        value = baseline[info.name]
        if level_name(value) in sampled:
            return level_name(value), "baseline in the spec"
        holding = _holding_bin(value, sampled)
        if holding is not None:
            return holding, f"bin holding the spec's baseline {level_name(value)}"
    if not sampled:
        return (levels[0], "no trial sampled it") if levels else ("", "no trials")
    first = "lowest bin" if _bin_bounds(sampled[0]) else "first level"
    if info.name in baseline:
        return sampled[0], f"{first} (no trial has the spec's baseline {level_name(baseline[info.name])})"
    for dep, allowed in info.when.items():
        if dep in baseline and baseline[dep] not in allowed:
            return sampled[0], f"{first}; the baseline {dep}={baseline[dep]} does not sample it"
    return sampled[0], f"{first} (the spec names no baseline for this factor)"


def _ci95(x: np.ndarray) -> float:
    if len(x) < 2:
        return math.nan
    return float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values (NaNs kept out)."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(idx)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def _mark(p: float) -> str:
    if math.isnan(p):
        return ""
    return "**" if p < 0.01 else "*" if p < ALPHA else ""


def factor_table(
    info: Param,
    run: RunTrials,
    values: pd.Series,
    *,
    mode: str,
    max_epochs: int,
    baseline: dict[str, Any],
    edges: list[float] | None = None,
) -> FactorTable:
    trials = run.trials.set_index("trial_id")
    labels = level_labels(trials[info.name] if info.name in trials else pd.Series(index=trials.index, dtype=float), info, edges)
    order = _level_order(labels, info)
    ref, why = reference_of_levels(info, order, baseline)
    keys = config_keys(trials, [p for p in run.params if p in trials.columns])

    def observations(ids: pd.Index) -> tuple[np.ndarray, int]:
        """Values at the rung, one per distinct config (repeats merged: their mean)."""
        v = values.reindex(ids).dropna()
        merged = v.groupby(keys.reindex(v.index).to_numpy(), sort=False).mean()
        return merged.to_numpy(), len(v) - len(merged)

    ref_x, _ = observations(labels.index[labels == ref])
    rows, pvals = [], []
    for level in order:
        ids = labels.index[labels == level]
        x, repeats = observations(ids)
        full = int((trials.loc[ids, "epochs"] >= max_epochs).sum())
        p = math.nan
        if level != ref and len(x) >= 2 and len(ref_x) >= 2:
            p = float(stats.mannwhitneyu(x, ref_x, alternative="two-sided").pvalue)
        pvals.append(p)
        best = Direction(mode).best(x)
        rows.append({
            "level": level + (" (ref)" if level == ref else ""),
            "trials": len(ids), "at_rung": len(x), "repeats": repeats, "full_budget": full,
            "best": best, "median": float(np.median(x)) if len(x) else math.nan,
            "mean": float(x.mean()) if len(x) else math.nan, "ci95": _ci95(x),
            "delta_vs_ref": (float(x.mean() - ref_x.mean()) if len(x) and len(ref_x) and level != ref else math.nan),
            "p": p,
        })
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(pvals)
    table["sig"] = [_mark(p) for p in table["p_holm"]]
    return FactorTable(info.name, table, ref, why)


def _comparable(t: FactorTable) -> bool:
    ref_n = t.table.loc[t.table["level"].str.endswith("(ref)"), "at_rung"]
    others_n = t.table.loc[~t.table["level"].str.endswith("(ref)"), "at_rung"]
    return bool(len(ref_n) and ref_n.iloc[0] >= 2 and (others_n >= 2).any())


def build_ablation(
    run: RunTrials,
    *,
    metric: str,
    mode: str,
    factors: list[Param],
    baseline: dict[str, Any],
    bins: dict[str, list[float]],
    max_epochs: int,
    grace_period: int,
    reduction_factor: float,
    rung: int | None = None,
) -> AblationResult:
    rungs = asha_rungs(max_epochs, grace_period, reduction_factor)
    chosen, counts = choose_rung(run, metric, rungs)
    if rung is not None:
        chosen = rung
        counts.setdefault(rung, len(values_at_epoch(run, metric, rung)))
    values = values_at_epoch(run, metric, chosen)
    at = {r: values_at_epoch(run, metric, r) for r in rungs}
    if rung is not None:
        at.setdefault(rung, values)

    def table_at(f: Param, r: int) -> FactorTable:
        t = factor_table(f, run, at[r], mode=mode, max_epochs=max_epochs, baseline=baseline,
                         edges=bins.get(f.name))
        t.rung, t.at_rung = r, len(at[r])
        return t

    tables = []
    for f in factors if not run.trials.empty else []:
        order = [rung] if rung is not None else (sorted((r for r in rungs if len(at[r])), reverse=True) or [rungs[0]])
        chosen_table = next((t for t in (table_at(f, r) for r in order) if _comparable(t)), None)
        tables.append(chosen_table or table_at(f, order[-1]))  # shallowest: every trial is there
    return AblationResult(metric=metric, mode=mode, rung=chosen, rungs=counts, n_trials=len(run.trials),
                          max_epochs=max_epochs, tables=tables, values=values)
