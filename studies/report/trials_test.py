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

from studies.report.ablation import NOT_SAMPLED

INACTIVE = NOT_SAMPLED  # a trial's level of a factor that its when-rule switched off
MIN_RESIDUAL_DF = 5     # fewer residual degrees of freedom: the variance estimate is too rough to test with
OFF_DESIGN_P = 0.01     # a factor is crossed with the tested one when its trials depart from the declared design at this level


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
    none = [(math.nan, math.nan)] * len(pairs)
    mask = within if within is not None else pd.Series(True, index=y.index)
    rows = mask[mask].index
    if factor not in labels or not len(rows):
        return none
    design = _Design(labels, rows, factor, crossed)
    weights, one_half = _half_weights(labels[factor].loc[rows].astype(str), None if halves is None else halves.loc[rows])
    fit = _WeightedFit(design.X, y.loc[rows].to_numpy(dtype=float), weights)
    if fit.df < MIN_RESIDUAL_DF:
        return none
    out = []
    for level, ref in pairs:
        c = None if level in one_half or ref in one_half else design.contrast(level, ref)
        out.append((math.nan, math.nan) if c is None else fit.test(c))
    return out


def off_design(tested: pd.Series, other: pd.Series, declared: list[str], inactive: str) -> bool:
    """Whether the trials' levels of ``other``, within each level of ``tested``,
    depart from the declared design (``declared``: its levels, equally likely
    there; trials where it is ``inactive`` left out): a chi-square test of the
    cell counts against each tested level's count spread over ``declared``,
    p < OFF_DESIGN_P. Random search passes it; a searcher that concentrates
    on a level, or pairs the tested factor's levels with different partners,
    does not, and then the additive fit's difference is local to where the
    searcher went, so the two factors are crossed."""
    active = (other != inactive) & other.isin(declared)
    if len(declared) < 2 or not active.any():
        return False
    counts = pd.crosstab(tested[active], other[active]).reindex(columns=declared, fill_value=0).to_numpy(dtype=float)
    expected = counts.sum(axis=1, keepdims=True) / len(declared)
    statistic = float(np.sum((counts - expected) ** 2 / expected))
    df = counts.shape[0] * (len(declared) - 1)
    return bool(stats.chi2.sf(statistic, df) < OFF_DESIGN_P)


class _Design:
    """The model matrix: an intercept, every level of ``factor``, every other
    factor's levels but its first, and the cells of ``factor`` with each
    ``crossed`` factor's levels but its first (treatment coding).

    A level's mean is taken over the declared design, as the surrogate's
    marginal is: each other factor at its levels with equal weight where it is
    active, and inactive (``INACTIVE``) as often as it is among that level's
    trials. That keeps a factor that is active only under some levels of the
    tested one (a conditional child) out of the difference instead of making
    it inestimable."""

    def __init__(self, labels: dict[str, pd.Series], rows: pd.Index, factor: str, crossed: tuple[str, ...]):
        self.factor = factor
        columns: list[np.ndarray] = [np.ones(len(rows))]
        names: list[tuple[str, str]] = [("", "")]
        self.present: dict[str, list[str]] = {}
        self.values = {name: lab.loc[rows].astype(str) for name, lab in labels.items()}
        for name, values in self.values.items():
            present = list(dict.fromkeys(values))
            if len(present) < 2:
                continue
            self.present[name] = present
            for level in present if name == factor else present[1:]:   # the factor: every level, a contrast picks two
                columns.append((values == level).to_numpy(dtype=float))
                names.append((name, level))
        mine = self.values[factor]
        # a child active under some of the factor's levels only has no cell with the others: never crossed
        self.crossed = [g for g in crossed if g != factor and g in self.present
                        and not any((self.values[g][mine == lv] == INACTIVE).all() for lv in self.present.get(factor, []))]
        for other in self.crossed:
            for level in self.present.get(factor, []):
                for level_g in self.present[other][1:]:
                    columns.append(((mine == level) & (self.values[other] == level_g)).to_numpy(dtype=float))
                    names.append((f"{factor}:{other}", f"{level}:{level_g}"))
        self.X = np.column_stack(columns)
        self.where = {key: i for i, key in enumerate(names)}

    def contrast(self, level: str, ref: str) -> np.ndarray | None:
        """The mean at ``level`` minus at ``ref`` over the declared design (see
        the class), crossed factors' cells averaged with equal weight; None if
        either level is absent."""
        if (self.factor, level) not in self.where or (self.factor, ref) not in self.where:
            return None
        return self._mean_of(level) - self._mean_of(ref)

    def _mean_of(self, level: str) -> np.ndarray:
        m = np.zeros(self.X.shape[1])
        m[0] = 1.0
        m[self.where[(self.factor, level)]] = 1.0
        at = self.values[self.factor] == level
        for other, present in self.present.items():
            if other == self.factor:
                continue
            active = [lv for lv in present if lv != INACTIVE]
            share = float((self.values[other][at] != INACTIVE).mean()) if at.any() else 0.0
            for lv in present:
                j = self.where.get((other, lv))
                if j is not None:      # the first present level is the reference: no column
                    m[j] += (1.0 - share) if lv == INACTIVE else share / len(active)
        for other in self.crossed:
            k = len(self.present[other])
            for level_g in self.present[other][1:]:
                j = self.where.get((f"{self.factor}:{other}", f"{level}:{level_g}"))
                if j is not None:
                    m[j] += 1.0 / k
        return m


class _WeightedFit:
    """Weighted least squares with the HC3 sandwich covariance."""

    def __init__(self, X: np.ndarray, target: np.ndarray, weights: np.ndarray):
        root = np.sqrt(weights)
        self.Xw = X * root[:, None]
        self.pinv = np.linalg.pinv(self.Xw)          # (X'WX)^+ X'W^(1/2)
        self.beta = self.pinv @ (target * root)
        self.df = len(target) - int(np.linalg.matrix_rank(self.Xw))
        resid = (target - X @ self.beta) * root
        leverage = np.einsum("ij,ji->i", self.Xw, self.pinv)
        # a trial that alone fixes a coefficient (a level sampled once): its error is unknown
        self.alone = leverage > 1 - 1e-8
        scaled = self.pinv * np.where(self.alone, 0.0, resid / np.where(self.alone, 1.0, 1 - leverage))   # HC3
        self.cov = scaled @ scaled.T

    def test(self, c: np.ndarray) -> tuple[float, float]:
        """c'beta and its two-sided t-test p-value; (nan, nan) where c'beta is not
        estimable (the data cannot tell it apart) or rests on a trial whose error is unknown."""
        if not np.allclose(c @ self.pinv @ self.Xw, c, atol=1e-8) or np.any(np.abs(c @ self.pinv[:, self.alone]) > 1e-8):
            return math.nan, math.nan
        estimate = float(c @ self.beta)
        se = math.sqrt(max(float(c @ self.cov @ c), 0.0))
        if se == 0.0:
            return estimate, 0.0 if estimate != 0.0 else 1.0
        return estimate, float(2 * stats.t.sf(abs(estimate) / se, self.df))


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
