"""A space-filling, balanced start for TPE and GP: the screening design (Ray-free).

Why: TPE's startup trials are its only look at the whole declared space, and
the report's global claims (which level of a factor is better *anywhere*, which
factor matters most) rest on them. Drawn at random, a factor's levels appear
unequally often and are confounded with each other's; laid out as a design,
every factor's levels appear equally often (counts differ by at most 1) and
every pair of factors is as balanced as the size allows, so each main effect
is estimable from those trials alone, nearly independently of the others
(``studies.report.screening`` turns them into tables).

The levels are the report's own: a categorical's choices, an int factor's
values when it has at most 6 (``studies.spec.levels.declared_levels``),
else the bins of the declared range (``ablation.bins`` or four equal bins on
the factor's scale). The rows are assigned level by level, factor by factor in
file order: an orthogonal array of strength 2 (``scipy.stats.qmc.LatinHypercube``)
when every factor has the same prime number p of levels and n = p^2; otherwise
a random balanced column for each factor, improved by swapping pairs of its
entries while that lowers the squared distance of every pair table with an
earlier factor from its uniform counts (a "nearly orthogonal array"). A
conditional factor is only set where its ``when`` holds, and its levels are
balanced over those rows. Inside a numeric level the value comes from a
scrambled Sobol sequence on the declared scale (log for log factors), one
sequence per level, so a bin's rows are spread across it; ints and ``step``
grids are rounded onto their grid inside the bin. Everything is drawn from
``seed``: the same spec gives the same rows, at run time and at report time.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import qmc

from studies.spec.param import Param

if TYPE_CHECKING:
    from studies.spec.study import StudySpec

RESIDUAL_DF = 8          # rows beyond the main-effects model's parameters: its error variance needs them
MAX_SWEEPS = 400         # improving swaps per factor (each the best of all n^2 swaps)
RESTARTS = 6             # random balanced starts per factor; the best improved one is kept
PASSES = 3               # passes that improve each leaf factor against all the others


@dataclass(frozen=True)
class Level:
    """One level of a factor: a fixed value (a choice, a small int) or a numeric bin."""

    label: str
    fixed: Any = None
    within: tuple[float, float, bool] | None = None   # (lo, hi, closed at hi)


@dataclass(frozen=True)
class DesignSize:
    """How many design rows, and why that many (the caption and the log say it)."""

    n: int
    wanted: int          # what every pair of levels and the main-effects model would need
    balanced: bool       # n >= wanted: every pair of levels can appear, the model has its error df
    why: str


def factor_levels(p: Param, bins: list[float] | None) -> list[Level]:
    """The report's levels of one factor (``declared_levels``), numeric bins that
    hold no value of an int / ``step`` grid left out."""
    from studies.spec.levels import declared_levels

    out = []
    levels = declared_levels(p, bins)
    for i, (label, how) in enumerate(levels):
        if "fixed" in how:
            out.append(Level(label, fixed=how["fixed"]))
            continue
        lo, hi = how["within"]
        level = Level(label, within=(float(lo), float(hi), i == len(levels) - 1))
        if p.type == "int" or p.step is not None:
            if _grid_range(p, level) is None:
                continue
        out.append(level)
    return out


def _grid_range(p: Param, level: Level) -> tuple[int, int] | None:
    """The first and last grid index (ints: the value itself) inside a bin, or None if it holds none."""
    assert level.within is not None and p.low is not None
    lo, hi, closed = level.within
    step = 1.0 if p.type == "int" and p.step is None else float(p.step or 1)
    origin = 0.0 if p.type == "int" and p.step is None else float(p.low)
    first = math.ceil((lo - origin) / step - 1e-9)
    last = math.floor((hi - origin) / step + 1e-9)
    if not closed and origin + last * step >= hi - 1e-12:
        last -= 1
    return (first, last) if first <= last else None


def design_size(params: list[Param], bins: dict[str, list[float]], num_samples: int) -> DesignSize:
    """Rows enough that every pair of levels can appear (the product of the two
    largest level counts) and the main-effects model keeps ``RESIDUAL_DF``
    degrees of freedom for its error, rounded up to a multiple of every level
    count (exact balance) where that fits; never more than half of
    ``num_samples`` (the rest is TPE's). When that cap is lower, the largest
    size under it that balances the most factors exactly."""
    counts = sorted((len(factor_levels(p, bins.get(p.name))) for p in params if p.declared), reverse=True)
    counts = [c for c in counts if c > 0]
    cap = min(num_samples // 2, num_samples - 1)   # the reference point is trial 0; TPE keeps at least half
    if not counts:
        return DesignSize(0, 0, True, "no declared factors")
    if cap < 1:
        return DesignSize(0, 0, False, f"no room for a design in {num_samples} trial(s): the reference point first")
    pairs = counts[0] * (counts[1] if len(counts) > 1 else 1)
    wanted = max(pairs, 1 + sum(c - 1 for c in counts) + RESIDUAL_DF)
    lcm = math.lcm(*counts)
    if wanted <= cap:
        # the smallest size >= wanted that balances the most factors exactly (ties: the smaller)
        candidates = range(wanted, min(cap, wanted + lcm) + 1)
        n = max(candidates, key=lambda m: (sum(m % c == 0 for c in counts), -m))
        return DesignSize(n, wanted, True, f"{n} rows: every pair of levels of the two largest factors "
                          f"({counts[0]} x {counts[1] if len(counts) > 1 else 1}) and the main-effects model "
                          f"({1 + sum(c - 1 for c in counts)} parameters + {RESIDUAL_DF} error df) fit")
    n = max(range(1, cap + 1), key=lambda m: (sum(m % c == 0 for c in counts), m))
    return DesignSize(n, wanted, False, f"{n} rows, fewer than the {wanted} a full screening needs: half of "
                      f"num_samples ({num_samples}) is the cap; each factor's levels are still balanced, "
                      "but not every pair of levels appears and the main effects share their error df")


def screening_design(params: list[Param], bins: dict[str, list[float]], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` configs over the declared space, each with only its active
    parameters (the shape Optuna's ``enqueue_trial`` and ``points_to_evaluate``
    take), balanced as the module docstring says. Deterministic for ``seed``."""
    if n <= 0:
        return []
    rng = np.random.default_rng([seed, 0x5C2E])
    declared = [p for p in params if p.declared]
    levels = {p.name: factor_levels(p, bins.get(p.name)) for p in declared}
    codes = _assign_levels(declared, levels, n, rng)
    values = _values(declared, levels, codes, rng)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {}
        for p in declared:
            if codes[p.name][i] >= 0 and p.active(row):
                row[p.name] = values[p.name][i]
        rows.append(row)
    return rows


def design_trials(spec: StudySpec) -> int:
    """N, the number of design rows a spec's run enqueues (0 without ``startup: design``)."""
    s = spec.search
    if s.startup != "design":
        return 0
    if s.design_trials is not None:
        return s.design_trials
    return design_size(spec.params, spec.ablation.bins, spec.budget.num_samples).n


def spec_design(spec: StudySpec) -> list[dict[str, Any]]:
    """The design a spec's run enqueues after its reference point (Optuna trials
    1..N), or [] when its search does not start with one. The run and the
    report both call this, so the report finds the design trials from the run
    folder's copy of the spec alone (seeded by ``search.seed``)."""
    return screening_design(spec.params, spec.ablation.bins, design_trials(spec), spec.search.seed)


# ------------------------------------------------------------------ levels per row

def _assign_levels(params: list[Param], levels: dict[str, list[Level]], n: int,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per factor, a level index per row (-1 where it is inactive): each column
    the best of ``RESTARTS`` improved random balanced columns against the
    earlier ones, then a few passes that improve each column no other factor's
    ``when`` reads against all the others (a parent's column stays: changing it
    would change where its children are active)."""
    codes: dict[str, np.ndarray] = {}
    oa = _orthogonal_array(params, levels, n, rng)
    if oa is not None:
        return {p.name: oa[:, j] for j, p in enumerate(params)}
    sizes = {p.name: len(levels[p.name]) for p in params}
    for j, p in enumerate(params):
        active = _active_rows(p, params, levels, codes, n)
        m = sizes[p.name]
        col = np.full(n, -1)
        if m == 0 or not active.any():
            codes[p.name] = col
            continue
        rows = np.flatnonzero(active)
        earlier = [(codes[q.name], sizes[q.name]) for q in params[:j]]
        tries = []
        for _ in range(RESTARTS if earlier else 1):
            start = col.copy()
            start[rows] = rng.permutation(np.resize(rng.permutation(m), len(rows)))
            tries.append(_improve(start, earlier, m, rng))
        codes[p.name] = min(tries, key=lambda t: t[1])[0]
    parents = {dep for p in params for dep in p.when}
    for _ in range(PASSES):
        changed = False
        for p in params:
            if p.name in parents or sizes[p.name] == 0 or not (codes[p.name] >= 0).any():
                continue
            others = [(codes[q.name], sizes[q.name]) for q in params if q is not p]
            before = _improve(codes[p.name], others, sizes[p.name], rng, sweeps=0)[1]
            col, cost = _improve(codes[p.name], others, sizes[p.name], rng)
            if cost < before - 1e-9:
                codes[p.name], changed = col, True
        if not changed:
            break
    return codes


def _active_rows(p: Param, params: list[Param], levels: dict[str, list[Level]], codes: dict[str, np.ndarray],
                 n: int) -> np.ndarray:
    """Rows where every ``when`` of ``p`` holds (a parent inactive in a row fails it)."""
    mask = np.ones(n, dtype=bool)
    by_name = {q.name: q for q in params}
    for dep, allowed in p.when.items():
        if dep not in codes or by_name[dep].type != "categorical":
            mask &= False if dep not in codes else _numeric_allowed(levels[dep], codes[dep], allowed)
            continue
        ok = [i for i, lv in enumerate(levels[dep]) if any(_same(lv.fixed, a) for a in allowed)]
        mask &= np.isin(codes[dep], ok)
    return mask


def _numeric_allowed(levels: list[Level], codes: np.ndarray, allowed: tuple[Any, ...]) -> np.ndarray:
    """A condition on a numeric parent holds only at a fixed level equal to an allowed value."""
    ok = [i for i, lv in enumerate(levels) if lv.within is None and any(_same(lv.fixed, a) for a in allowed)]
    return np.isin(codes, ok)


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _orthogonal_array(params: list[Param], levels: dict[str, list[Level]], n: int,
                      rng: np.random.Generator) -> np.ndarray | None:
    """An OA(p^2, k, p, 2) from scipy when it fits exactly: no conditional
    factor, every factor with the same prime number p of levels, n = p^2 and
    k <= p + 1. Its columns are level codes."""
    counts = {len(levels[p.name]) for p in params}
    if len(counts) != 1 or any(p.when for p in params):
        return None
    p = counts.pop()
    if p < 2 or n != p * p or len(params) > p + 1 or any(p % d == 0 for d in range(2, p)):
        return None
    sample = qmc.LatinHypercube(d=len(params), strength=2, seed=rng).random(n)
    return np.floor(sample * p).astype(int)


def _onehot(col: np.ndarray, m: int) -> np.ndarray:
    out = np.zeros((len(col), m))
    on = col >= 0
    out[np.flatnonzero(on), col[on]] = 1.0
    return out


def _improve(col: np.ndarray, others: list[tuple[np.ndarray, int]], m: int, rng: np.random.Generator,
             sweeps: int = MAX_SWEEPS) -> tuple[np.ndarray, float]:
    """Steepest descent over swaps of two active entries of ``col`` (which keep
    its level counts), and the cost it ends at: the sum, over the ``others``
    (a column of level codes and its number of levels), of the squared
    differences between the pair table's counts and uniform ones over the rows
    where both are active, each divided by its uniform count (a chi-square
    distance, so that factors with many levels do not dominate)."""
    on = col >= 0
    blocks, targets = [], []
    for c, k in others:
        both = on & (c >= 0)
        if k == 0 or not both.any():
            continue
        expected = both.sum() / (m * k)
        w = 1.0 / math.sqrt(expected)
        blocks.append(_onehot(np.where(both, c, -1), k) * w)
        targets.append(np.full((m, k), expected * w))
    if not blocks:
        return col, 0.0
    B, T = np.hstack(blocks), np.hstack(targets)      # (n, K): weighted one-hot of the others; their targets
    rows = np.flatnonzero(on)
    Br = B[rows]
    sq = (Br * Br).sum(1)
    dd = sq[:, None] + sq[None, :] - 2 * Br @ Br.T    # |B_i - B_i'|^2
    col = col.copy()
    for _ in range(sweeps):
        G = _onehot(col, m).T @ B - T                 # (m, K): weighted deviation from uniform
        lv = col[rows]
        GB = Br @ G.T                                 # [i, a] = B_i . G[a]
        own = GB[np.arange(len(rows)), lv]
        cross = GB[:, lv]                             # [i, i'] = B_i . G[a_i']
        # swapping rows i, i' (levels a, a'): the cost changes by 2 d.(G[a'] - G[a]) + 2 |d|^2, d = B_i - B_i'
        delta = 2 * (cross - own[:, None] - own[None, :] + cross.T) + 2 * dd
        delta[lv[:, None] == lv[None, :]] = np.inf
        best = float(delta.min())
        if not best < -1e-9:
            break
        ties = np.argwhere(delta <= best + 1e-9)
        i, k = ties[rng.integers(len(ties))]
        col[rows[i]], col[rows[k]] = col[rows[k]], col[rows[i]]
    G = _onehot(col, m).T @ B - T
    return col, float((G * G).sum())


# ------------------------------------------------------------------ values inside levels

def _values(params: list[Param], levels: dict[str, list[Level]], codes: dict[str, np.ndarray],
            rng: np.random.Generator) -> dict[str, list[Any]]:
    """Per factor and row, the value: a level's fixed value, or a point of the
    level's own scrambled Sobol sequence inside its bin, in random row order."""
    out: dict[str, list[Any]] = {}
    for p in params:
        col = codes[p.name]
        values: list[Any] = [None] * len(col)
        for k, level in enumerate(levels[p.name]):
            rows = np.flatnonzero(col == k)
            if not len(rows):
                continue
            if level.within is None:
                for r in rows:
                    values[r] = _native(p, level.fixed)
                continue
            u = _sobol(len(rows), rng)
            for r, x in zip(rng.permutation(rows), u):
                values[r] = _in_bin(p, level, float(x))
        out[p.name] = values
    return out


def _sobol(n: int, rng: np.random.Generator) -> np.ndarray:
    """The first ``n`` points of a fresh scrambled 1-d Sobol sequence in [0, 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "balance properties ... require n to be a power of 2": the first n are kept
        return qmc.Sobol(d=1, scramble=True, seed=rng).random_base2(max(0, math.ceil(math.log2(n))))[:n, 0]


def _in_bin(p: Param, level: Level, u: float) -> Any:
    """The point at ``u`` in [0, 1) of a bin on the factor's scale, on its grid."""
    assert level.within is not None
    lo, hi, closed = level.within
    u_lo, u_hi = (float(v) for v in p.to_unit(np.array([lo, hi])))
    x = float(np.exp(u_lo + u * (u_hi - u_lo))) if p.log else lo + u * (hi - lo)
    if p.type == "int" or p.step is not None:
        span = _grid_range(p, level)
        assert span is not None   # factor_levels keeps only bins that hold a grid value
        step = 1.0 if p.type == "int" and p.step is None else float(p.step or 1)
        origin = 0.0 if p.type == "int" and p.step is None else float(p.low or 0)
        k = min(max(round((x - origin) / step), span[0]), span[1])
        value = origin + k * step
        return int(round(value)) if p.type == "int" else float(f"{value:.12g}")
    x = min(max(x, lo), hi)
    if not closed and x >= hi:
        x = float(np.nextafter(hi, -np.inf))
    return x


def _native(p: Param, value: Any) -> Any:
    """A fixed level's value as the sampler would give it (an int factor's int)."""
    if p.type == "int":
        return int(round(float(value)))
    if p.type == "float":
        return float(value)
    return value
