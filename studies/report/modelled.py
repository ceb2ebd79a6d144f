"""Modelled evidence: each level's global marginal, from a surrogate fitted on
every trial at one rung and averaged over the declared search space.

Why: the trials a searcher chose are not a designed experiment. TPE samples
its favourite region, so a level's mean over its trials is the mean *in that
region*, and the "bad" level's trials are mostly the early random ones. As in
fANOVA (Hutter, Hoos & Leyton-Brown, ICML 2014) a surrogate is fitted on all
trials (``Surrogate``: smooth main effects plus a random forest on what
they leave), and a level's marginal is its prediction averaged over the
whole declared space with that level fixed (numeric factors: drawn inside
the level's bin), every other factor drawn uniformly (log scales and ``when``
conditions respected). A conditional factor is averaged over the part of the
space where it is active.

Uncertainty: the surrogate is refitted on bootstrap resamples of the trials
(pairs), each with a fresh draw of the noise (a wild bootstrap, Wu 1986 /
Mammen 1993: the out-of-bag residual of each trial with a random sign). Why
the second part: a forest memorises the noise of the trials it was fitted on,
and a plain pairs bootstrap keeps that same noise in every resample, so its
refits agree too well. Measured on 80 simulated studies with an exactly null
factor (40 trials): pairs alone flagged the null factor in 18%, pairs + wild
in 1%. The refits give the spread, centred on the fit to all trials. Each
level gets a 95% percentile interval, each difference to the reference a
two-sided bootstrap p-value (twice the smaller tail mass beyond 0), Holm-
corrected within the factor's table. The difference's interval is taken at
the level Holm used for that comparison, so a mark and an interval that
excludes 0 always go together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from studies.report.ablation import NOT_SAMPLED, holm, level_labels, reference_of_levels
from studies.report.space import sample_space
from studies.report.trials_test import level_contrasts, off_design
from studies.spec.direction import Direction
from studies.spec.levels import declared_levels
from studies.spec.param import Param

ALPHA = 0.05
N_TREES = 64          # point estimate
N_BOOT = 100          # bootstrap refits
N_BOOT_TREES = 8      # trees per bootstrap refit (sklearn fits ~1 ms a tree; --report must stay quick)
N_SPACE = 250         # Monte-Carlo configs per level
MIN_LEAF = 2
CATEGORICAL_ALPHA = 1.0                      # ridge on a choice's effect: as one extra trial at the mean
SPLINE_KNOTS = 6                             # cubic B-splines over a numeric factor's declared range: 8 per factor
SMOOTHING_GRID = np.logspace(-3, 3, 13)      # candidate roughness penalties, chosen by GCV on the fit to all trials
# A difference below this share of the metric's observed range is rounding, not a finding; a metric
# whose range is below CONSTANT_TOLERANCE of its size is one value.
RESOLUTION = 1e-6
CONSTANT_TOLERANCE = 1e-12
# Gates: a modelled table carries marks, and the answer claims from it, only when the surrogate predicts
# held-out trials (out-of-bag R^2, every trial predicted by a fit that did not see it) at least this well,
# and the study has at least MIN_CONFIGS distinct configs; a level, MIN_CONFIGS_PER_LEVEL.
R2_MIN = 0.5
MIN_CONFIGS = 20
MIN_CONFIGS_PER_LEVEL = 3
# A level's global marginal averages over every level of every other factor: it is only measured (not
# extrapolated) where the level was sampled with each of them, MIN_CELL distinct configs per pair of levels.
MIN_CELL = 2
# Modelled differences are marked (and claimed) only at p_holm < MARK_LEVEL, "**": the surrogate's bootstrap
# covers the noise of the trials, not the error of the surrogate itself, so its tests get a stricter level.
# Measured on benchmarks/claims_truth.py: at 5% a null factor was claimed in 4 of 80 random-search answers.
MARK_LEVEL = 0.01
N_PAIR_SPACE = 64       # Monte-Carlo configs per (level, level of another factor)
MAX_PAIR_LEVELS = 8     # factors with more levels than this are not crossed (the table would be unreadable)
MATERIAL = 0.05         # a factor matters for coverage and interactions when its main-effect variance is this share of the largest


@dataclass
class ModelledTable:
    factor: str
    # level, marginal, lo, hi, delta, delta_lo, delta_hi, p, p_holm, sig, configs, withheld: ``sig`` is the
    # mark the answer may cite; ``withheld`` says why a row's test result carries no mark (a gate).
    table: pd.DataFrame
    reference: str
    reference_why: str
    rung: int
    n_trials: int             # distinct configs the forest was fitted on
    scope: str                # "whole space" or the condition it is averaged under
    # level -> the other factors' levels it was never sampled with ({"lr": ["[0.001, 0.003)"]}): where
    # its global marginal is the surrogate's extrapolation, not a measurement
    uncovered: dict[str, dict[str, list[str]]] = field(default_factory=dict)


@dataclass
class Interaction:
    """One factor's effect (each level minus its reference) within each level of
    another factor: fANOVA's second order, said as conditional differences."""

    factor: str
    other: str
    reference: str
    # level, given (the other factor's level), delta, delta_lo, delta_hi, p, p_holm, sig, configs (distinct
    # configs at level and given), ref_configs (at the reference and given)
    table: pd.DataFrame
    flips: list[str]          # levels whose marked conditional differences have both signs


@dataclass
class ModelledResult:
    tables: list[ModelledTable]
    rung: int
    n_configs: int            # distinct configs at the rung
    n_repeats: int            # trials merged into an identical config
    n_boot: int
    fit_r2: float             # out-of-bag R^2 of the point-estimate surrogate
    gate: str = ""            # why the surrogate earns no claim ("" when it does)
    log_scale: bool = False   # fitted to log(metric) (a ratio-scale metric), marginals back in metric units
    # factor, variance, lo, hi (95% bootstrap interval of the main-effect variance), first (share of refits
    # ranking it first)
    importance: pd.DataFrame = field(default_factory=pd.DataFrame)
    interactions: list[Interaction] = field(default_factory=list)


# ------------------------------------------------------------------ encoding

class Encoder:
    """Configs -> the surrogate's inputs, two blocks side by side:

    - for the forest: numeric factors on their declared scale (log for log
      factors), an inactive one at a value below its range; categorical
      factors one-hot (all zeros when inactive);
    - for the main effects: per categorical factor one indicator per choice,
      per numeric factor a cubic B-spline basis over its declared range (on
      the declared scale), and for each factor one indicator for "inactive".

    ``penalties`` says how the main effects' fit penalises each block: a
    categorical factor's choices by a ridge, a numeric factor's spline
    coefficients by their second differences (roughness).
    """

    def __init__(self, factors: list[Param]):
        from sklearn.preprocessing import SplineTransformer

        self.factors = factors
        self.n_forest = sum(len(f.choices) if f.type == "categorical" else 1 for f in factors)
        self.splines = SplineTransformer(n_knots=SPLINE_KNOTS, degree=3, extrapolation="constant").fit(
            np.linspace(0.0, 1.0, SPLINE_KNOTS)[:, None])
        self.penalties: list[tuple[slice, str]] = []
        start = 0
        for f in factors:
            width = len(f.choices) if f.type == "categorical" else self.splines.n_features_out_
            self.penalties.append((slice(start, start + width), "ridge" if f.type == "categorical" else "roughness"))
            start += width + 1                     # + the "inactive" indicator, unpenalised
        self.n_effects = start

    def __call__(self, configs: pd.DataFrame) -> np.ndarray:
        forest, effects = [], []
        for f in self.factors:
            raw = configs[f.name] if f.name in configs else pd.Series([None] * len(configs), index=configs.index)
            if f.type == "categorical":
                onehot = [np.array([v == c or _same(v, c) for v in raw], dtype=float) for c in f.choices]
                forest += onehot
                effects += onehot
                effects.append(1.0 - np.sum(onehot, axis=0))
                continue
            lo, hi = f.to_unit(np.array([f.low, f.high], dtype=float))
            x = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                u = f.to_unit(np.where(np.isfinite(x) & ((x > 0) | (not f.log)), x, np.nan))
            on = np.isfinite(u)
            forest.append(np.where(on, u, lo - (hi - lo)))
            at = np.clip((np.where(on, u, lo) - lo) / (hi - lo) if hi > lo else np.zeros(len(u)), 0.0, 1.0)
            basis = (self.splines.transform(at[:, None]) * on[:, None] if len(at)  # sklearn refuses 0 rows
                     else np.zeros((0, self.splines.n_features_out_)))
            effects += list(basis.T)
            effects.append((~on).astype(float))
        cols = forest + effects
        return np.column_stack(cols) if cols else np.zeros((len(configs), 0))


class MainEffects:
    """Penalised least squares of the metric on the main-effect block, with an
    intercept: a ridge on each categorical factor's choices, and on each
    numeric factor's spline coefficients a penalty on their second
    differences (P-splines, Eilers & Marx 1996), which leaves a straight line
    on the declared scale free and makes a curve pay for its bends. The
    weight of each numeric factor's penalty is chosen by generalised
    cross-validation (GCV) on the fit to all trials, and kept for the
    bootstrap refits.

    Why smooth main effects rather than one effect per level (bin): under TPE
    the non-favourite bins of a factor hold a handful of trials, and a bin's
    own effect is as noisy as its few trials; a smooth curve borrows strength
    from the neighbouring bins, and follows the shape *inside* a bin, where
    TPE's trials sit at one end (which also sharpens the other factors'
    effects). Measured on benchmarks/known_truth.py (``many_weak``, 20 studies
    of the default TPE, the tables' point estimates): level-order rank
    correlation of the medium factors ``width`` and ``optimizer`` 0.86 and
    0.88 with this, 0.67 and 0.78 with per-bin effects; bin means that knew
    every other term exactly reached 0.84 on ``width``. Without noise (a
    tabular benchmark's case): 1.00 and 1.00, against 0.91 and 0.93.
    """

    def __init__(self, penalties: list[tuple[slice, str]], width: int, smoothing: np.ndarray | None = None):
        self.penalties, self.width, self.smoothing = penalties, width, smoothing
        self.smooth = [s for s, kind in penalties if kind == "roughness"]

    def _penalty(self, smoothing: np.ndarray) -> np.ndarray:
        P = 1e-8 * np.eye(self.width)   # the spline bases and the intercept overlap: keep it solvable
        for s, kind in self.penalties:
            if kind == "ridge":
                P[s, s] += CATEGORICAL_ALPHA * np.eye(s.stop - s.start)
        for s, weight in zip(self.smooth, smoothing):
            D = np.diff(np.eye(s.stop - s.start), n=2, axis=0)
            P[s, s] += weight * D.T @ D
        return P

    def _solve(self, gram: np.ndarray, zy: np.ndarray, yc: np.ndarray, zc: np.ndarray,
               smoothing: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        inverse = np.linalg.inv(gram + self._penalty(smoothing))
        coef = inverse @ zy
        edf = 1.0 + float(np.trace(inverse @ gram))
        n = len(yc)
        return n * float(np.sum((yc - zc @ coef) ** 2)) / max(n - edf, 1e-9) ** 2, coef, inverse

    def fit(self, Z: np.ndarray, y: np.ndarray) -> MainEffects:
        """With no ``smoothing`` given: one weight per numeric factor, by GCV,
        coordinate by coordinate from the best common weight (two sweeps)."""
        self.z_mean, self.y_mean = Z.mean(axis=0), float(y.mean())
        zc, yc = Z - self.z_mean, y - self.y_mean
        gram, zy = zc.T @ zc, zc.T @ yc
        if self.smoothing is None:
            def gcv(weights: np.ndarray) -> float:
                return self._solve(gram, zy, yc, zc, weights)[0]

            k = len(self.smooth)
            weights = min((np.full(k, w) for w in SMOOTHING_GRID), key=gcv)
            for _ in range(2):
                for i in range(k):
                    weights = min((np.where(np.arange(k) == i, w, weights) for w in SMOOTHING_GRID), key=gcv)
            self.smoothing = weights
        _, self.coef, self._inverse = self._solve(gram, zy, yc, zc, self.smoothing)
        return self

    def predict(self, Z: np.ndarray) -> np.ndarray:
        return self.y_mean + (Z - self.z_mean) @ self.coef

    def loo(self, Z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Leave-one-out predictions from the hat matrix: y_i - e_i / (1 - h_ii).
        In-sample residuals are too small by the degrees of freedom the fit
        uses, and the wild bootstrap draws its noise from these residuals."""
        zc = Z - self.z_mean
        h = 1.0 / len(y) + np.einsum("ij,jk,ik->i", zc, self._inverse, zc)
        return y - (y - self.predict(Z)) / np.clip(1.0 - h, 1e-3, None)


class Surrogate:
    """Smooth main effects (``MainEffects``), then a random forest
    (scikit-learn) on what they leave: interactions and any shape the
    smooth curves miss. Why not the forest alone: under TPE the trials of a
    factor's poor levels are few, and mixed with poor levels of the others;
    a forest splits on whatever separates them first and attributes the
    difference to it, while the main effects are estimated from every trial
    at once. Measured on benchmarks/known_truth.py under TPE: the forest
    alone recovered 0.25-0.29 of the learning rate's true spread, main
    effects plus the forest 0.76-0.89 with Optuna's 10 random startup trials
    and 0.95-1.01 with the platform's default (benchmarks/README.md, section 7)."""

    def __init__(self, encoder: Encoder, n_trees: int, seed: int, oob: bool, smoothing: np.ndarray | None = None):
        self.k, self.n_trees, self.seed, self.oob = encoder.n_forest, n_trees, seed, oob
        self.effects = MainEffects(encoder.penalties, encoder.n_effects, smoothing)

    def fit(self, M: np.ndarray, y: np.ndarray) -> Surrogate:
        from sklearn.ensemble import RandomForestRegressor

        X, Z = M[:, :self.k], M[:, self.k:]
        self.effects.fit(Z, y)
        main = self.effects.predict(Z)
        self.forest = RandomForestRegressor(n_estimators=self.n_trees, min_samples_leaf=MIN_LEAF, max_features=1.0,
                                            bootstrap=True, oob_score=self.oob, random_state=self.seed, n_jobs=1)
        self.forest.fit(X, y - main)
        if self.oob:  # out-of-sample for both parts: the main effects' leave-one-out fit, the forest's out-of-bag one
            self.oob_prediction_ = self.effects.loo(Z, y) + self.forest.oob_prediction_
            self.oob_score_ = 1.0 - np.mean((y - self.oob_prediction_) ** 2) / np.var(y)
        return self

    def predict(self, M: np.ndarray) -> np.ndarray:
        return self.effects.predict(M[:, self.k:]) + self.forest.predict(M[:, :self.k])


def _same(a: Any, b: Any) -> bool:
    """1, 1.0 and "1" are one level (YAML and Optuna spell numbers differently)."""
    try:
        return a is not None and b is not None and float(a) == float(b)
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------ levels of a factor over the declared space

def _space_for_levels(factors: list[Param], hows: dict[str, dict[str, Any]], n: int, seed: int) -> pd.DataFrame:
    """``n`` configs uniform over the space where every factor of ``hows`` is
    active, each at its level (``{"fixed": value}`` or ``{"within": (lo, hi)}``);
    empty when the ``when`` conditions never let them all be active together."""
    rng = np.random.default_rng(seed)  # the same seed for every level: paired Monte-Carlo draws
    fixed = {name: how["fixed"] for name, how in hows.items() if "fixed" in how}
    within = {name: how["within"] for name, how in hows.items() if "within" in how}
    kept: list[pd.DataFrame] = []
    tries = 0
    while sum(len(k) for k in kept) < n and tries < 50:
        draw = sample_space(factors, 2 * n, rng, fixed=fixed or None, within=within or None)
        kept.append(draw[draw[list(hows)].notna().all(axis=1)])
        tries += 1
        if tries >= 3 and not any(len(k) for k in kept):
            break   # never active together (a `when` rule), or too rarely to average over
    return pd.concat(kept).head(n).reset_index(drop=True)


def _space_for_level(factors: list[Param], f: Param, how: dict[str, Any], n: int, seed: int) -> pd.DataFrame:
    """``n`` configs uniform over the space where ``f`` is active, with ``f`` at the level."""
    out = _space_for_levels(factors, {f.name: how}, n, seed)
    if out.empty:
        raise ValueError(f"{f.name}: its `when` conditions can never hold in the declared space")
    return out


def _scope(f: Param) -> str:
    if not f.when:
        return "whole space"
    return "where " + " and ".join(f"{dep} in {{{', '.join(map(str, allowed))}}}" for dep, allowed in f.when.items())


# ------------------------------------------------------------------ statistics

def tail_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a difference: twice the smaller share of
    bootstrap differences on either side of 0 (ties count on both sides)."""
    d = np.asarray(diffs, dtype=float)
    return float(min(1.0, 2.0 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0)))))


def percentile_interval(draws: np.ndarray, alpha: float) -> tuple[float, float]:
    """The (1 - alpha) percentile interval, with order statistics chosen so
    that it excludes 0 exactly when ``tail_p(draws) < alpha``."""
    d = np.sort(np.asarray(draws, dtype=float))
    b = len(d)
    k = max(0, math.ceil(alpha * b / 2) - 1)
    return float(d[k]), float(d[b - 1 - k])


def holm_levels(pvalues: list[float], alpha: float = ALPHA) -> list[float]:
    """The per-comparison level of Holm's step-down procedure: the k-th smallest
    p is tested at alpha / (m - k + 1); once one is not rejected, every later
    one is held at that same level (so none of them is rejected either)."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(idx)
    out = [math.nan] * len(pvalues)
    stopped: float | None = None
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        level = alpha / (m - rank) if stopped is None else stopped
        if stopped is None and not pvalues[i] < level:
            stopped = level
        out[i] = level
    return out


# ------------------------------------------------------------------ the tables

def merge_repeats(configs: pd.DataFrame, values: pd.Series, names: list[str]) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Identical configs proposed several times are one observation (their
    mean, with the weight of one: a config the searcher liked enough to repeat
    must not pull the surrogate towards itself)."""
    key = configs[names].astype(object).where(configs[names].notna(), None).map(_key_of)
    frame = configs[names].assign(_key=key.apply(tuple, axis=1).values, _y=values.values)
    grouped = frame.groupby("_key", sort=False)
    merged = grouped.first().reset_index(drop=True)
    y = grouped["_y"].mean().to_numpy()
    return merged[names], y, int(len(frame) - len(merged))


def _key_of(v: Any) -> Any:
    if v is None:
        return None
    try:
        return round(float(v), 12)
    except (TypeError, ValueError):
        return str(v)


def modelled_tables(configs: pd.DataFrame, values: pd.Series, factors: list[Param], *, space: list[Param] | None = None,
                    baseline: dict[str, Any], bins: dict[str, list[float]], mode: str, rung: int, seed: int = 0,
                    n_boot: int = N_BOOT, n_space: int = N_SPACE, log_scale: bool = False,
                    interactions: bool = True) -> ModelledResult:
    """One table per factor in ``factors``. ``configs``: one row per trial at
    the rung (columns: every parameter of ``space``), ``values``: the metric
    at the rung, same index. ``space``: every declared parameter (the
    surrogate's inputs, and what is averaged over); defaults to ``factors``.
    ``log_scale``: a ratio-scale metric (positive) is modelled as log(metric),
    so that no marginal or interval end can fall below zero; the marginals are
    means of exp(prediction), back in the metric's units.
    ``interactions``: also each factor's differences within each level of every
    other factor, and the gates on them (see ``Interaction``)."""
    space = [f for f in (space or factors) if f.declared]
    ok = values.notna() & np.isfinite(values.astype(float))
    # Repeats are judged on every parameter the trials have, the forest sees the declared ones.
    X_cfg, y, repeats = merge_repeats(configs.loc[ok.index[ok]], values[ok].astype(float), list(configs.columns))
    log_scale = bool(log_scale and len(y) and np.all(y > 0))
    encode = Encoder(space)
    n = len(y)
    levels = {f.name: declared_levels(f, bins.get(f.name)) for f in space}
    cover = _coverage_of(X_cfg, y, space, levels, bins, log_scale)
    labels, halves = cover.labels, cover.halves
    plan, draws, blocks = _level_plan(space, levels, n_space, seed)
    wanted = {f.name for f in factors}
    if not any(f.name in wanted for f, _, _ in plan) or n < 4 or np.ptp(y) <= CONSTANT_TOLERANCE * max(1.0, float(np.max(np.abs(y)))):
        # one value (up to float rounding): nothing to model, and any "difference" would be rounding
        return ModelledResult([], rung, n, repeats, 0, math.nan, gate=_gate_text(n, math.nan, space, levels),
                              log_scale=log_scale)
    models, r2 = _fit_surrogates(encode(X_cfg), np.log(y) if log_scale else y, encode, seed=seed, n_boot=n_boot)
    point, boot, rows = _marginals(models, encode(pd.concat(blocks, ignore_index=True)), [s for *_, s in plan],
                                   log_scale)
    gate = _gate_text(n, r2, space, levels)
    cols_of = {f.name: [i for i, (g, _, _) in enumerate(plan) if g is f] for f in space}
    spreads = _spreads(cols_of, point, boot)
    material = _material(space, plan, cols_of, rows, spreads, labels, levels)
    pairs, pair_point, pair_boot = _pair_marginals(factors, material if interactions else [], space, levels, cols_of,
                                                   models, encode, seed, log_scale, n_boot)
    tables, found = [], []
    for f in (f for f in factors if cols_of.get(f.name)):
        cols = cols_of[f.name]
        mine = [j for j, (pf, *_rest) in enumerate(pairs) if pf is f]
        table, inter = _factor_table(f, [plan[i][1] for i in cols], point[cols], boot[:, cols], baseline=baseline,
                                     resolution=RESOLUTION * float(np.ptp(y)), log_scale=log_scale, labels=labels,
                                     halves=halves, cover=cover, draws=draws, material=material, levels=levels,
                                     pairs=([pairs[j] for j in mine], pair_point[mine], pair_boot[:, mine]), gate=gate,
                                     rung=rung, n=n)
        found += inter
        tables.append(table)
    _last_gates(tables, found, cover, gate)
    return ModelledResult(tables, rung, n, repeats, n_boot, r2, gate=gate, log_scale=log_scale,
                          importance=_importance({k: v for k, v in spreads.items() if k in wanted}),
                          interactions=found)


def _coverage_of(X_cfg: pd.DataFrame, y: np.ndarray, space: list[Param], levels: dict[str, list],
                 bins: dict[str, list[float]], log_scale: bool) -> _Coverage:
    """Each trial's level of every factor (and half of its bin), with the metric as observed and as fitted."""
    labels = {f.name: level_labels(X_cfg[f.name], f, bins.get(f.name)) for f in space if f.name in X_cfg}
    halves = {f.name: _halves(X_cfg[f.name], f, levels[f.name]) for f in space
              if f.name in X_cfg and any("within" in how for _, how in levels[f.name])}
    return _Coverage(labels, halves, pd.Series(y, index=X_cfg.index),
                     fitted=pd.Series(np.log(y) if log_scale else y, index=X_cfg.index),
                     declared={f.name: [label for label, _ in levels[f.name]] for f in space})


def _spreads(cols_of: dict[str, list[int]], point: np.ndarray, boot: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
    """Per factor: the variance of its levels' marginals, and that variance in each bootstrap refit."""
    return {name: (float(np.var(point[cols])),
                   np.var(np.column_stack([_centred(boot[:, i], point[i]) for i in cols]), axis=1))
            for name, cols in cols_of.items() if cols}


def _last_gates(tables: list[ModelledTable], found: list[Interaction], cover: _Coverage, gate: str) -> None:
    """The gates over all tables at once: the trials' own test (Holm over every
    table), then which conditional marks may stand (they depend on why the
    global one was withheld, so they come after it)."""
    _require_trials_support(tables, cover)
    for t in tables:
        _keep_conditional_marks([i for i in found if i.factor == t.factor], t.table, t.reference, t.uncovered, gate)


def _level_plan(space: list[Param], levels: dict[str, list], n_space: int, seed: int) -> tuple[
        list[tuple[Param, str, slice]], dict[tuple[str, str], pd.DataFrame], list[pd.DataFrame]]:
    """Every (factor, level) Monte-Carlo set of the space (tables only for the
    study's factors; the others' marginals say which factors matter), stacked so
    each forest predicts once: (factor, level, rows of the stack), the sets, the stack."""
    plan: list[tuple[Param, str, slice]] = []
    draws: dict[tuple[str, str], pd.DataFrame] = {}
    blocks, start = [], 0
    for f in space:
        for label, how in levels[f.name]:
            frame = _space_for_level(space, f, how, n_space, seed + 7919)
            draws[(f.name, label)] = frame
            blocks.append(frame)
            plan.append((f, label, slice(start, start + len(frame))))
            start += len(frame)
    return plan, draws, blocks


def _material(space: list[Param], plan: list[tuple[Param, str, slice]], cols_of: dict[str, list[int]], rows: np.ndarray,
              spreads: dict[str, tuple[float, np.ndarray]], labels: dict[str, pd.Series], levels: dict[str, list]) -> list[Param]:
    """Factors whose total effect (main effect and interactions: the variance over
    its levels of the prediction at one config, averaged over configs, as Sobol's
    total index) is at least MATERIAL of the largest: a level's marginal must have
    been measured across their levels, and its effect is crossed with them.
    Why total, not main: a factor whose effect flips sign with another has a small
    main effect and a large total. And every factor with a level sampled fewer
    than MIN_CELL times: the surrogate cannot see an effect (or an interaction) of
    a level it has (almost) no trials at, so it cannot tell that it does not matter."""
    total = {name: _total_effect([rows[plan[i][2]] for i in cols], spreads[name][0]) for name, cols in cols_of.items()
             if cols}
    largest = max(total.values())
    unseen = {f.name for f in space if f.name in labels
              and min(int((labels[f.name] == lv).sum()) for lv, _ in levels[f.name]) < MIN_CELL}
    return [f for f in space if total.get(f.name, 0.0) >= MATERIAL * largest > 0 or f.name in unseen]


def _pair_marginals(factors: list[Param], material: list[Param], space: list[Param], levels: dict[str, list],
                    cols_of: dict[str, list[int]], models: Any, encode: Encoder, seed: int, log_scale: bool,
                    n_boot: int) -> tuple[list[tuple[Param, str, Param, str, slice]], np.ndarray, np.ndarray]:
    """Each factor's level within each level of every material factor: the
    (factor, level, other, other's level, rows) and their marginals."""
    pairs: list[tuple[Param, str, Param, str, slice]] = []
    pair_blocks, start = [], 0
    for f in factors:
        if f.name not in cols_of or len(levels[f.name]) > MAX_PAIR_LEVELS:
            continue
        for label, how in levels[f.name]:
            for g in material:
                if g is f or len(levels[g.name]) > MAX_PAIR_LEVELS:
                    continue
                for g_label, g_how in levels[g.name]:
                    frame = _space_for_levels(space, {f.name: how, g.name: g_how}, N_PAIR_SPACE, seed + 104729)
                    if len(frame) < N_PAIR_SPACE // 4:
                        continue   # the two levels are (almost) never active together
                    pair_blocks.append(frame)
                    pairs.append((f, label, g, g_label, slice(start, start + len(frame))))
                    start += len(frame)
    if not pairs:
        return pairs, np.zeros(0), np.zeros((n_boot, 0))
    pair_point, pair_boot, _ = _marginals(models, encode(pd.concat(pair_blocks, ignore_index=True)),
                                          [s for *_, s in pairs], log_scale)
    return pairs, pair_point, pair_boot


def _factor_table(f: Param, f_labels: list[str], point: np.ndarray, boot: np.ndarray, *, baseline: dict[str, Any],
                  resolution: float, log_scale: bool, labels: dict[str, pd.Series], halves: dict[str, Any],
                  cover: _Coverage, draws: dict[tuple[str, str], pd.DataFrame], material: list[Param],
                  levels: dict[str, list], pairs: tuple[list, np.ndarray, np.ndarray], gate: str, rung: int,
                  n: int) -> tuple[ModelledTable, list[Interaction]]:
    """One factor's table with every gate applied, and its conditional differences."""
    table, ref, why = _level_table(f, f_labels, point, boot, baseline, resolution=resolution, ratio=log_scale)
    counts = labels[f.name].value_counts() if f.name in labels else pd.Series(dtype=int)
    table["configs"] = [int(counts.get(label, 0)) for label in f_labels]
    uncovered = {label: _uncovered(f, label, draws[(f.name, label)], cover, material, levels) for label in f_labels}
    # a level's (and the reference's) own bin: MIN_CELL configs in each half, since its marginal is the
    # average over all of the bin, and the curve inside it rests on them
    one_half = {label for label in f_labels if f.name in halves and not cover.covered(
        pd.Series(True, index=labels[f.name].index), f.name, label, per_half=MIN_CELL)}
    mine, pair_point, pair_boot = pairs
    inter = _interactions(f, ref, mine, pair_point, pair_boot, cover, table, resolution=resolution)
    disagree = {row["level"].removesuffix(" (ref)"): [g.name for g in material if g is not f and _disagrees(
        row["delta"], cover.raw_difference(f.name, row["level"], ref, by=g.name))]
        for _, row in table.iterrows() if row["level"] != ref and not row["level"].endswith("(ref)")}
    table["withheld"] = _withheld(table, ref, uncovered, inter, gate, one_half, disagree)
    table.loc[table["withheld"] != "", "sig"] = ""
    weak = table["sig"] == "*"   # modelled evidence is marked at the 1% level only (see MARK_LEVEL)
    table.loc[weak, "withheld"] = f"p_holm >= {MARK_LEVEL}: a modelled difference is marked only below it"
    table.loc[weak, "sig"] = ""
    return ModelledTable(f.name, table, ref, why, rung, n, _scope(f), {k: v for k, v in uncovered.items() if v}), inter


def _require_trials_support(tables: list[ModelledTable], cover: _Coverage) -> None:
    """A marked row keeps its mark only where the trials' own least-squares
    test supports it (see ``trials_test``), with Holm over every comparison of
    every table (the answer claims from all of them at once); otherwise it says why."""
    rows = [(t, i) for t in tables for i in t.table.index
            if not str(t.table.at[i, "level"]).endswith("(ref)") and np.isfinite(t.table.at[i, "delta"])]
    if not any(t.table.at[i, "sig"] for t, i in rows):
        return
    why = cover.unsupported([(t.factor, str(t.table.at[i, "level"]), t.reference, float(t.table.at[i, "delta"]), None)
                             for t, i in rows], family="every comparison of the modelled tables")
    for (t, i), w in zip(rows, why):
        if w and t.table.at[i, "sig"]:
            t.table.at[i, "sig"] = ""
            t.table.at[i, "withheld"] = w


def _gate_text(n: int, r2: float, space: list[Param], levels: dict[str, list]) -> str:
    """Why the surrogate earns no claim, or "" when it does."""
    if n < MIN_CONFIGS:
        return f"only {n} distinct configs at this rung, fewer than the {MIN_CONFIGS} a surrogate needs"
    if math.isnan(r2) or r2 < R2_MIN:
        r2_text = "could not be computed" if math.isnan(r2) else f"is {r2:.2f}"
        return (f"the surrogate does not predict held-out trials well enough: its out-of-bag R² {r2_text}, "
                f"below the {R2_MIN} required")
    return ""


class _Coverage:
    """Where the trials are: each trial's level of every factor, and for a
    binned numeric factor which half of its bin it sits in. A cell (a level of
    one factor with a level of another) is covered when it holds MIN_CELL
    distinct configs, and, for a bin, configs in both of its halves: a bin's
    marginal averages over all of it, and under TPE the trials of a bin often
    sit at one end, where the surrogate's curve says nothing about the other."""

    def __init__(self, labels: dict[str, pd.Series], halves: dict[str, pd.Series], y: pd.Series,
                 fitted: pd.Series | None = None, declared: dict[str, list[str]] | None = None):
        self.labels, self.halves, self.y = labels, halves, y
        self.fitted = y if fitted is None else fitted   # the metric on the scale the surrogate fits
        self.declared = declared or {}                  # each factor's declared levels (labels)

    def crossed(self, f: str, within: pd.Series | None) -> tuple[str, ...]:
        """The factors whose trials (``within``) depart from the declared design
        given ``f``'s level (``trials_test.off_design``): the trials' test crosses them with ``f``."""
        mask = within if within is not None else pd.Series(True, index=self.y.index)
        return tuple(g for g in self.labels if g != f and g in self.declared
                     and off_design(self.labels[f][mask], self.labels[g][mask], self.declared[g], NOT_SAMPLED))

    def unsupported(self, rows: list[tuple[str, str, str, float, tuple[str, str] | None]], *,
                    family: str) -> list[str]:
        """Per (factor, level, reference, the surrogate's delta, None or the
        (other factor, its level) the comparison is within): why the trials' own
        least-squares test (``trials_test``) does not support it, or "" where it
        does: same sign, and p_holm < ALPHA with Holm over every row given (pass
        one family at once, named by ``family``: the answer's claims)."""
        groups: dict[tuple[str, tuple[str, str] | None], list[int]] = {}
        for k, (f, _, _, _, cell) in enumerate(rows):
            groups.setdefault((f, cell), []).append(k)
        tests: list[tuple[float, float]] = [(math.nan, math.nan)] * len(rows)
        for (f, cell), ks in groups.items():   # one fit per factor and cell, every pair of it tested on it
            within = None if cell is None else self.labels[cell[0]] == cell[1]
            pairs = [(rows[k][1].removesuffix(" (ref)"), rows[k][2]) for k in ks]
            for k, result in zip(ks, level_contrasts(self.labels, self.fitted, f, pairs, within, self.halves.get(f),
                                                     self.crossed(f, within))):
                tests[k] = result
        p_holm = holm([p for _, p in tests]) if tests else []
        out = []
        for (*_, delta, _within), (estimate, p), ph in zip(rows, tests, p_holm):
            if math.isnan(p):
                out.append("the trials' own least-squares test cannot estimate it (too few trials, a cell with "
                           "another factor's level or one half of a bin not sampled)")
            elif estimate * delta <= 0:
                out.append("the trials' own least-squares test (every factor's levels; crossed with the tested "
                           "one where the trials depart from the declared design) points the other way")
            elif not ph < ALPHA:
                out.append(f"the trials' own least-squares test (every factor's levels; crossed with the tested "
                           f"one where the trials depart from the declared design; Holm over {family}) does not "
                           f"find it (p_holm {ph:.2g})")
            else:
                out.append("")
        return out

    def raw_difference(self, f: str, level: str, ref: str, within: pd.Series | None = None,
                       by: str | None = None) -> float:
        """The trials' own mean at ``level`` minus at ``ref`` (``within`` a mask),
        averaged with equal weight over the levels of ``by`` where both were
        sampled (a stratified comparison: each stratum compares like with like).
        NaN where no stratum holds both."""
        mask = within if within is not None else pd.Series(True, index=self.y.index)
        of = self.labels[by] if by is not None else pd.Series("", index=self.y.index)
        diffs = []
        for s in dict.fromkeys(of[mask]):
            rows = mask & (of == s)
            a, b = self.y[rows & (self.labels[f] == level)], self.y[rows & (self.labels[f] == ref)]
            if len(a) and len(b):
                diffs.append(float(a.mean() - b.mean()))
        return float(np.mean(diffs)) if diffs else math.nan

    def covered(self, mask: pd.Series, g: str, level: str, per_half: int = 1) -> bool:
        """``per_half``: configs needed in each half of a bin."""
        if g not in self.labels:
            return False
        rows = mask & (self.labels[g] == level)
        if int(rows.sum()) < MIN_CELL:
            return False
        if g not in self.halves:
            return True
        halves = self.halves[g][rows].value_counts()
        return len(halves) == 2 and int(halves.min()) >= per_half

    def count(self, a: str, a_level: str, b: str, b_level: str) -> int:
        if a not in self.labels or b not in self.labels:
            return 0
        return int(((self.labels[a] == a_level) & (self.labels[b] == b_level)).sum())


def _halves(values: pd.Series, f: Param, levels: list[tuple[str, dict[str, Any]]]) -> pd.Series:
    """0 or 1: the half of its bin (on the declared scale) each trial's value is in; NaN where inactive."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    out = np.full(len(x), np.nan)
    for _, how in levels:
        if "within" not in how:
            continue
        lo, hi = (float(v) for v in f.to_unit(np.array(how["within"], dtype=float)))
        with np.errstate(invalid="ignore", divide="ignore"):
            u = f.to_unit(np.where(np.isfinite(x) & ((x > 0) | (not f.log)), x, np.nan))
        inside = (u >= lo) & (u <= hi)
        out[inside] = (u[inside] >= (lo + hi) / 2).astype(float)
    return pd.Series(out, index=values.index)


def _uncovered(f: Param, label: str, draws: pd.DataFrame, cover: _Coverage, space: list[Param],
               levels: dict[str, list]) -> dict[str, list[str]]:
    """The levels of other factors that ``f`` at ``label`` was not sampled with
    (see ``_Coverage``), among those its marginal averages over (at least 5% of
    its Monte-Carlo draws): there the marginal is the surrogate's extrapolation."""
    if f.name not in cover.labels:
        return {}
    at = cover.labels[f.name] == label
    out: dict[str, list[str]] = {}
    for g in space:
        if g is f or g.name not in cover.labels or g.name not in draws:
            continue
        drawn = level_labels(draws[g.name], g, None if g.type == "categorical" else _edges_of(levels[g.name]))
        shares = drawn[draws[g.name].notna()].value_counts() / max(len(draws), 1)
        missing = [lv for lv, _ in levels[g.name] if shares.get(lv, 0.0) >= 0.05 and not cover.covered(at, g.name, lv)]
        if missing:
            out[g.name] = missing
    return out


def _edges_of(levels: list[tuple[str, dict[str, Any]]]) -> list[float] | None:
    """The bin edges behind a numeric factor's levels (None for one level per value)."""
    bounds = [how["within"] for _, how in levels if "within" in how]
    if not bounds:
        return None
    return [float(bounds[0][0])] + [float(hi) for _, hi in bounds]


def _interactions(f: Param, ref: str, cells: list[tuple[Param, str, Param, str, slice]], point: np.ndarray,
                  boot: np.ndarray, cover: _Coverage, table: pd.DataFrame, *,
                  resolution: float) -> list[Interaction]:
    """Per other factor g: each level of ``f`` minus ``ref`` within each level of
    g, bootstrap-tested and Holm-corrected over every such difference of ``f``
    (all g at once, so looking at many g does not buy marks). A conditional
    difference keeps its mark only where both its level and the reference were
    sampled at that level of g (``_Coverage``: MIN_CELL distinct configs each, in
    both halves of a bin)."""
    index = {(lv, g.name, gl): i for i, (_, lv, g, gl, _) in enumerate(cells)}
    rows: list[dict[str, Any]] = []
    diffs: list[np.ndarray | None] = []
    for i, (_, lv, g, gl, _) in enumerate(cells):
        r = index.get((ref, g.name, gl))
        if lv == ref or r is None:
            continue
        rows.append({"level": lv, "other": g.name, "given": gl, "delta": point[i] - point[r],
                     "configs": cover.count(f.name, lv, g.name, gl), "ref_configs": cover.count(f.name, ref, g.name, gl),
                     "_covered": cover.covered(cover.labels[f.name] == lv, g.name, gl)
                     and cover.covered(cover.labels[f.name] == ref, g.name, gl)})
        diffs.append(_centred(boot[:, i] - boot[:, r], point[i] - point[r]))
    if not rows:
        return []
    frame = pd.concat([pd.DataFrame(rows), compare_to_reference(diffs, resolution=resolution)], axis=1)
    frame.loc[~frame.pop("_covered").astype(bool), "sig"] = ""
    # A conditional difference the trials of its own cell contradict (their raw means, level against reference
    # at that level of g, have the other sign) is the surrogate's main effect showing through, not a measurement.
    against = [_disagrees(r["delta"], cover.raw_difference(f.name, r["level"], ref,
                                                          within=cover.labels[r["other"]] == r["given"]))
               for _, r in frame.iterrows()]
    frame.loc[against, "sig"] = ""
    frame.loc[frame["sig"] == "*", "sig"] = ""   # marked at MARK_LEVEL only, as the tables
    if (frame["sig"] != "").any():   # and only where the trials of the cell support it (Holm over every row)
        why = cover.unsupported([(f.name, r["level"], ref, float(r["delta"]), (r["other"], r["given"]))
                                 for _, r in frame.iterrows()], family="this factor's conditional comparisons")
        frame.loc[[w != "" for w in why], "sig"] = ""
    out = []
    global_sig = dict(zip(table["level"].str.removesuffix(" (ref)"), zip(table["sig"], table["delta"])))
    for g_name, part in frame.groupby("other", sort=False):
        flips = []
        for lv, rows_lv in part.groupby("level", sort=False):
            marked = rows_lv[rows_lv["sig"] != ""]
            signs = set(np.sign(marked["delta"]))
            mark, delta = global_sig.get(lv, ("", math.nan))
            if len(signs) > 1 or (mark and any(s == -np.sign(delta) for s in signs)):
                flips.append(str(lv))
        out.append(Interaction(f.name, str(g_name), ref, part.drop(columns=["other"]).reset_index(drop=True), flips))
    return out


def _keep_conditional_marks(interactions: list[Interaction], table: pd.DataFrame, ref: str,
                            uncovered: dict[str, dict[str, list[str]]], gate: str) -> None:
    """A conditional difference keeps its mark only where it says what the
    global one cannot: the level's global mark was withheld, and only for the
    other factor of this table (a gap in it, or a sign change with it). A gap
    or sign change with a third factor is averaged over inside the cell too,
    and a level whose global comparison stands needs no conditional one.
    Every other row says why in ``withheld``."""
    withheld = dict(zip(table["level"].str.removesuffix(" (ref)"), table["withheld"]))
    for inter in interactions:
        notes = []
        for _, r in inter.table.iterrows():
            level = r["level"]
            gaps = set(uncovered.get(level, {})) | set(uncovered.get(ref, {}))
            flips = {i.other for i in interactions if level in i.flips}
            why = ""
            if gate:
                why = "surrogate not trusted (see the modelled tables)"
            elif not withheld.get(level):
                why = "the global comparison holds: see the modelled table"
            elif not (gaps | flips) or not (gaps | flips) <= {inter.other}:
                why = f"global mark withheld for more than {inter.other}: {withheld.get(level)}"
            notes.append(why)
        inter.table["withheld"] = notes
        inter.table.loc[inter.table["withheld"] != "", "sig"] = ""


def _disagrees(delta: float, raw: float) -> bool:
    """The surrogate's difference and the trials' own (stratified) one point in opposite directions."""
    return bool(np.isfinite(delta) and np.isfinite(raw) and delta * raw < 0)


def _withheld(table: pd.DataFrame, ref: str, uncovered: dict[str, dict[str, list[str]]],
              interactions: list[Interaction], gate: str, one_half: set[str] | None = None,
              disagree: dict[str, list[str]] | None = None) -> list[str]:
    """Per row, why its test result carries no mark ("" where it may)."""
    out = []
    for _, row in table.iterrows():
        level = row["level"].removesuffix(" (ref)")
        if level == ref:
            out.append("")
            continue
        reasons = []
        if gate:
            reasons.append("surrogate not trusted (see caption)")
        if row["configs"] < MIN_CONFIGS_PER_LEVEL:
            reasons.append(f"{int(row['configs'])} configs at this level")
        thin = sorted({level, ref} & (one_half or set()))
        if thin:
            reasons.append(f"{' and '.join(thin)} sampled fewer than {MIN_CELL} times in one half of its bin")
        gaps = {**uncovered.get(ref, {}), **uncovered.get(level, {})}
        if gaps:
            reasons.append("not sampled with " + "; ".join(f"{g} {', '.join(v)}" for g, v in gaps.items()))
        against = (disagree or {}).get(level, [])
        if against:
            reasons.append(f"the trials themselves, compared within each level of {', '.join(against)}, point the "
                           "other way")
        flips = [i.other for i in interactions if level in i.flips]
        if flips:
            reasons.append(f"its effect changes sign with {', '.join(flips)} (see interactions)")
        out.append("; ".join(reasons))
    return out


def _importance(spreads: dict[str, tuple[float, np.ndarray]]) -> pd.DataFrame:
    """Each factor's main-effect variance (its levels' marginals, equally
    weighted) with a 95% bootstrap interval, and the share of bootstrap refits
    in which it is the largest."""
    if not spreads:
        return pd.DataFrame(columns=["factor", "variance", "lo", "hi", "first"])
    names = list(spreads)
    draws = np.column_stack([spreads[k][1] for k in names])
    firsts = np.bincount(np.argmax(draws, axis=1), minlength=len(names)) / len(draws)
    rows = [{"factor": k, "variance": spreads[k][0], "lo": float(np.quantile(spreads[k][1], 0.025)),
             "hi": float(np.quantile(spreads[k][1], 0.975)), "first": float(firsts[i])} for i, k in enumerate(names)]
    return pd.DataFrame(rows).sort_values("variance", ascending=False).reset_index(drop=True)


def _fit_surrogates(X: np.ndarray, y: np.ndarray, encoder: Encoder, *, seed: int,
                    n_boot: int) -> tuple[list[Surrogate], float]:
    """The surrogate fitted to all trials, then ``n_boot`` refits on
    pairs-plus-wild resamples (with the point fit's smoothing: GCV on a
    resample with repeated trials would take the repeats for agreement and
    smooth too little); and the point fit's out-of-bag R^2 (on the scale fitted)."""
    n = len(y)
    point_model = Surrogate(encoder, N_TREES, seed, oob=n >= 8).fit(X, y)
    r2 = float(getattr(point_model, "oob_score_", math.nan))
    rng = np.random.default_rng(seed + 1)
    models = [point_model]
    oob = getattr(point_model, "oob_prediction_", None)
    wild = oob is not None and bool(np.all(np.isfinite(oob)))
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        yb = y[idx]
        if wild:  # a fresh noise draw: each residual keeps its size, its sign is flipped at random
            assert oob is not None   # wild implies it
            yb = oob[idx] + rng.choice([-1.0, 1.0], n) * (y[idx] - oob[idx])
        models.append(Surrogate(encoder, N_BOOT_TREES, seed + 100 + b, oob=False,
                                smoothing=point_model.effects.smoothing).fit(X[idx], yb))
    return models, r2


def _marginals(models: list[Surrogate], grid: np.ndarray, blocks: list[slice],
               log_scale: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each block's mean prediction over ``grid``: from the fit to all trials
    (point) and from each bootstrap refit (one row per refit); and the fit to
    all trials' prediction of every row. ``log_scale``: the models predict
    log(metric), and a block's mean is the mean of exp(prediction)."""

    def rows_of(model: Surrogate) -> np.ndarray:
        pred = model.predict(grid)
        return np.exp(pred) if log_scale else pred

    rows = rows_of(models[0])
    point = np.array([rows[s].mean() for s in blocks])
    boot = np.array([[pred[s].mean() for s in blocks] for pred in map(rows_of, models[1:])]).reshape(
        len(models) - 1, len(blocks))
    return point, boot, rows


def _total_effect(levels: list[np.ndarray], main: float) -> float:
    """The variance over a factor's levels of the prediction at one config,
    averaged over configs: the Monte-Carlo sets of its levels are paired (the
    same draws of every other factor), so row i of each is one config. ``main``
    where they are not (a ``when`` rule dropped different rows)."""
    if len(levels) < 2 or len({len(v) for v in levels}) != 1:
        return main
    return float(np.mean(np.var(np.vstack(levels), axis=0)))


def _bootstrapped_marginals(X: np.ndarray, y: np.ndarray, grid: np.ndarray, blocks: list[slice], encoder: Encoder, *,
                            seed: int, n_boot: int, log_scale: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """``_fit_surrogates`` then ``_marginals``, in one call."""
    models, r2 = _fit_surrogates(X, y, encoder, seed=seed, n_boot=n_boot)
    point, boot, _ = _marginals(models, grid, blocks, log_scale)
    return point, boot, r2


def _centred(draws: np.ndarray, at: float, *, ratio: bool = False) -> np.ndarray:
    """Bootstrap draws moved to centre on the fit to all trials. The refits supply
    the spread; why centre: a refit on a resample sees fewer distinct configs of
    a sparse level, so its main effects are shrunk more, and uncentred draws
    can leave the point estimate outside its own interval."""
    if ratio:   # a positive quantity (a ratio-scale metric's marginal): moved by a factor, so it stays positive
        middle = float(np.median(draws))
        return draws * (at / middle) if middle > 0 and at > 0 else draws - middle + at
    return draws - np.median(draws) + at


def _level_table(f: Param, labels: list[str], point: np.ndarray, boot: np.ndarray,
                 baseline: dict[str, Any], *, resolution: float = 0.0, ratio: bool = False) -> tuple[pd.DataFrame, str, str]:
    """One factor's table: each level's marginal with its interval, and its
    difference to the reference level with Holm-adjusted tests."""
    ref, why = reference_of_levels(f, labels, baseline)
    r = labels.index(ref)
    rows = []
    for i, label in enumerate(labels):
        lo, hi = percentile_interval(_centred(boot[:, i], point[i], ratio=ratio), ALPHA)
        rows.append({"level": label + (" (ref)" if i == r else ""), "marginal": point[i], "lo": lo, "hi": hi,
                     "delta": point[i] - point[r] if i != r else math.nan})
    tests = compare_to_reference([_centred(boot[:, i] - boot[:, r], point[i] - point[r]) if i != r else None
                                  for i in range(len(labels))], resolution=resolution)
    table = pd.concat([pd.DataFrame(rows), tests], axis=1)[
        ["level", "marginal", "lo", "hi", "delta", "delta_lo", "delta_hi", "p", "p_holm", "sig"]]
    return table, ref, why


def compare_to_reference(diffs: list[np.ndarray | None], *, resolution: float = 0.0) -> pd.DataFrame:
    """Bootstrap differences to the reference (None: the reference itself) ->
    p, Holm-adjusted p, the mark, and the difference's interval at the level
    Holm tests it at (so the interval excludes 0 exactly when it is marked).
    A bootstrap difference within ``resolution`` of 0 counts as 0 (a tie): a
    metric that is constant up to float rounding must not give 1e-13 a mark."""
    diffs = [None if d is None else np.where(np.abs(d) <= resolution, 0.0, d) for d in diffs]
    pvals = [tail_p(d) if d is not None else math.nan for d in diffs]
    levels = holm_levels(pvals)
    p_holm = holm(pvals)
    rows = []
    for d, p, level, ph in zip(diffs, pvals, levels, p_holm):
        lo, hi = percentile_interval(d, level) if d is not None else (math.nan, math.nan)
        rows.append({"delta_lo": lo, "delta_hi": hi, "p": p, "p_holm": ph,
                     "sig": "" if math.isnan(ph) else "**" if ph < 0.01 else "*" if ph < ALPHA else ""})
    return pd.DataFrame(rows, columns=["delta_lo", "delta_hi", "p", "p_holm", "sig"])


def best_level(t: ModelledTable, mode: str) -> pd.Series:
    rows = t.table.dropna(subset=["marginal"])
    return rows.loc[Direction(mode).idxbest(rows["marginal"])]
