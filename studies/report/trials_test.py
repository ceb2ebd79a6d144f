"""The trials' own test of a modelled difference: an ordinary least-squares
fit of the metric on every factor's levels (additive: one indicator per level,
the bins of a numeric factor as levels), and a t-test of one level against the
reference level of the same factor.

Why a second test: the surrogate's bootstrap covers the noise of the trials,
not the surrogate's own error, and on exactly null factors it marked
differences at p_holm < 0.01 (benchmarks/claims_truth.py: 4 of 10 random-search
answers on ``flip_like``). The least-squares test has an honest error
estimate: everything the additive model misses (interactions, the curve inside
a bin) goes into its residual, so it is conservative where the surrogate is
not. A modelled mark stands only where both agree.

A bin's marginal averages over all of the bin, while a searcher's trials often
sit at one end of it. So a numeric factor's trials can be weighted to have
each half of their bin count equally (``halves``), and the variance is the
HC3 sandwich (MacKinnon & White 1985), which stays honest when a few heavily
weighted trials carry a half and when levels differ in spread.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

MIN_RESIDUAL_DF = 5     # fewer residual degrees of freedom: the variance estimate is too rough to test with


def level_contrasts(labels: dict[str, pd.Series], y: pd.Series, factor: str,
                    pairs: list[tuple[str, str]], within: pd.Series | None = None,
                    halves: pd.Series | None = None, crossed: tuple[str, ...] = ()) -> list[tuple[float, float]]:
    """For each (level, reference) of ``factor``: the least-squares difference
    (level minus reference, adjusted for every other factor's levels) and its
    two-sided t-test p-value, over the trials in ``within`` (a mask; all by
    default). ``labels``: each factor's level per trial (one index with ``y``).
    (nan, nan) where the difference is not estimable from these trials (a level
    not sampled, confounded with another factor's level) or the residual has
    fewer than MIN_RESIDUAL_DF degrees of freedom. ``halves``: for a binned
    numeric ``factor``, the half of its bin (0 or 1) each trial is in; the
    trials are then weighted so that both halves of each level count equally,
    and a level with trials in one half only has no estimate. ``crossed``:
    other factors whose effect may change with ``factor`` (interactions): the
    model gets a term per cell of ``factor`` with each of them, and the
    difference is averaged over their levels with equal weight, as a marginal
    over the declared space is; a cell never sampled leaves it without an
    estimate (a searcher that paired each level with a different partner
    cannot say which of the two acted)."""
    mask = within if within is not None else pd.Series(True, index=y.index)
    rows = mask[mask].index
    if factor not in labels or not len(rows):
        return [(math.nan, math.nan)] * len(pairs)
    columns: list[np.ndarray] = [np.ones(len(rows))]
    names: list[tuple[str, str]] = [("", "")]
    present_of: dict[str, list[str]] = {}
    for name, lab in labels.items():
        values = lab.loc[rows].astype(str)
        present = list(dict.fromkeys(values))
        if len(present) < 2:
            continue
        present_of[name] = present
        keep = present if name == factor else present[1:]   # the factor: every level, the contrast picks two
        for level in keep:
            columns.append((values == level).to_numpy(dtype=float))
            names.append((name, level))
    mine = labels[factor].loc[rows].astype(str)
    for other in (g for g in crossed if g != factor and g in present_of):
        values = labels[other].loc[rows].astype(str)
        for level in present_of.get(factor, []):
            for level_g in present_of[other][1:]:
                columns.append(((mine == level) & (values == level_g)).to_numpy(dtype=float))
                names.append((f"{factor}:{other}", f"{level}:{level_g}"))
    X = np.column_stack(columns)
    target = y.loc[rows].to_numpy(dtype=float)
    weights, one_half = _half_weights(labels[factor].loc[rows].astype(str), None if halves is None else halves.loc[rows])
    root = np.sqrt(weights)
    Xw = X * root[:, None]
    pinv = np.linalg.pinv(Xw)          # (X'WX)^+ X'W^(1/2)
    beta = pinv @ (target * root)
    rank = int(np.linalg.matrix_rank(Xw))
    if len(target) - rank < MIN_RESIDUAL_DF:
        return [(math.nan, math.nan)] * len(pairs)
    df = len(target) - rank
    resid = (target - X @ beta) * root
    leverage = np.einsum("ij,ji->i", Xw, pinv)
    alone = leverage > 1 - 1e-8        # a trial that alone fixes a coefficient (a level sampled once): its error is unknown
    scaled = pinv * np.where(alone, 0.0, resid / np.where(alone, 1.0, 1 - leverage))   # HC3
    cov = scaled @ scaled.T
    where = {key: i for i, key in enumerate(names)}
    out = []
    for level, ref in pairs:
        i, r = where.get((factor, level)), where.get((factor, ref))
        if i is None or r is None or level in one_half or ref in one_half:
            out.append((math.nan, math.nan))
            continue
        c = np.zeros(len(names))
        c[i], c[r] = 1.0, -1.0
        for other in (g for g in crossed if g != factor and g in present_of):
            k = len(present_of[other])
            for level_g in present_of[other][1:]:
                for lv, sign in ((level, 1.0), (ref, -1.0)):
                    j = where.get((f"{factor}:{other}", f"{lv}:{level_g}"))
                    if j is not None:
                        c[j] += sign / k
        if not np.allclose(c @ pinv @ Xw, c, atol=1e-8) or np.any(np.abs(c @ pinv[:, alone]) > 1e-8):
            # not estimable (the data cannot tell it apart), or resting on a trial whose error is unknown
            out.append((math.nan, math.nan))
            continue
        estimate = float(c @ beta)
        se = math.sqrt(max(float(c @ cov @ c), 0.0))
        p = 0.0 if se == 0.0 and estimate != 0.0 else 1.0 if se == 0.0 else float(2 * stats.t.sf(abs(estimate) / se, df))
        out.append((estimate, p))
    return out


def _half_weights(levels: pd.Series, halves: pd.Series | None) -> tuple[np.ndarray, set[str]]:
    """Per trial: the weight that makes both halves of its level's bin count
    equally (1 where there are no halves); and the levels sampled in one half only."""
    if halves is None or halves.isna().all():
        return np.ones(len(levels)), set()
    weights = np.ones(len(levels))
    one_half = set()
    h = halves.to_numpy(dtype=float)
    for level in dict.fromkeys(levels):
        at = (levels == level).to_numpy() & np.isfinite(h)
        if not at.any():
            continue
        counts = [int(np.sum(at & (h == k))) for k in (0, 1)]
        if min(counts) == 0:
            one_half.add(level)
            continue
        for k in (0, 1):
            weights[at & (h == k)] = at.sum() / (2 * counts[k])
    return weights, one_half
