"""Multi-objective arithmetic: non-dominated sorting, crowding distance, hypervolume.

Pure numpy (no Ray, no Optuna), shared by the multi-objective ASHA scheduler
(studies/tune/mo_asha.py) and by the reports.

Conventions: ``points`` is an ``(n, m)`` array (n points, m objectives), in
the objectives' own units; ``modes`` says per objective whether it is
minimised (``"min"``) or maximised (``"max"``). Internally every function
works on minimised copies (``as_minimised``), so "a dominates b" always means
"a is <= b everywhere and < b somewhere" there.

A row holding a NaN in any objective is not comparable with anything: it is
put in a front of its own after every finite front, gets crowding distance 0,
is never on the Pareto front and adds no hypervolume. Infinite values are
ordinary (extreme) values for sorting.

Resolution: fronts, crowding distances and orders treat two values of one
objective as equal when they differ by less than ``RESOLUTION`` (1e-9) times
the largest magnitude of that objective's finite values (``resolve_ties``).
Why: an objective that is constant in truth (a probe that recognised nothing)
still differs in the 13th digit from float rounding, and without this those
differences would decide who dominates whom and, divided by the tiny range,
would weigh fully in the crowding distance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "RESOLUTION",
    "as_minimised",
    "constant_columns",
    "crowding_distance",
    "hypervolume",
    "nondominated_ranks",
    "pareto_front_mask",
    "pareto_order",
    "reference_point",
    "resolve_ties",
]

RESOLUTION = 1e-9


def _signs(modes: Sequence[str], m: int) -> np.ndarray:
    modes = [modes] if isinstance(modes, str) else list(modes)
    if len(modes) != m:
        raise ValueError(f"{len(modes)} modes for {m} objectives")
    bad = [x for x in modes if x not in ("min", "max")]
    if bad:
        raise ValueError(f"modes must be 'min' or 'max', got {bad}")
    return np.array([-1.0 if x == "max" else 1.0 for x in modes])


def _points(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"points must be an (n, m) array, got shape {arr.shape}")
    return arr


def as_minimised(points: np.ndarray | Sequence[Sequence[float]], modes: Sequence[str]) -> np.ndarray:
    """A copy of ``points`` with the maximised columns negated, so that smaller is better everywhere."""
    arr = _points(points)
    return arr * _signs(modes, arr.shape[1])


def _resolve_column(col: np.ndarray, rel: float) -> np.ndarray:
    """One objective's values with near-equal finite values made equal (the mean of their group)."""
    out = col.copy()
    finite = np.flatnonzero(np.isfinite(col))
    if finite.size < 2 or not rel > 0:
        return out
    tol = rel * float(np.abs(col[finite]).max())
    if not tol > 0:
        return out
    order = finite[np.argsort(col[finite], kind="stable")]
    # Groups of sorted values whose consecutive gaps are within the tolerance.
    starts = np.flatnonzero(np.concatenate(([True], np.diff(col[order]) > tol)))
    for group in np.split(order, starts[1:]):
        if group.size > 1:
            out[group] = col[group].mean()
    return out


def resolve_ties(points: np.ndarray | Sequence[Sequence[float]], rel: float = RESOLUTION) -> np.ndarray:
    """A copy of ``points`` in which, per objective, finite values that differ by at
    most ``rel`` times the objective's largest finite magnitude are replaced by their
    mean, so that comparisons treat them as ties. Sorted values are grouped by the
    gaps between neighbours; NaN and infinite values are left as they are.
    ``rel = 0`` changes nothing."""
    arr = _points(points).copy()
    for j in range(arr.shape[1]):
        arr[:, j] = _resolve_column(arr[:, j], rel)
    return arr


def constant_columns(points: np.ndarray | Sequence[Sequence[float]], rel: float = RESOLUTION) -> np.ndarray:
    """Per objective: is it (nearly) constant over the rows, i.e. do all its values
    tie under ``resolve_ties`` (sorted, no two neighbours further apart than ``rel``
    times the objective's largest magnitude)? Needs at least two rows (one row says
    nothing about variation: False); a column with a NaN is not constant.

    Why this threshold: it is the one every comparison here already uses, so a
    constant objective is exactly one that cannot decide dominance, crowding or an
    order. It is relative to the objective's own magnitude, so units do not matter,
    and at 1e-9 it sits some seven orders of magnitude above float64 rounding (an
    accuracy of 1/6 averaged over batches differs in the 13th digit) and far below
    any difference a trained model shows. Not a noise test: search trials have one
    seed each, so there is no noise estimate per config, and an objective that moves
    less than seed noise is still measured (the confirmation stage weighs noise).
    An objective that is 0 in truth and carries absolute float noise (values of
    about 1e-17) has no magnitude to be relative to and is not called constant.
    """
    arr = _points(points)
    if arr.shape[0] < 2:
        return np.zeros(arr.shape[1], dtype=bool)
    resolved = resolve_ties(arr, rel)
    out = np.zeros(arr.shape[1], dtype=bool)
    for j in range(arr.shape[1]):
        col = resolved[:, j]
        out[j] = not np.isnan(col).any() and bool((col == col[0]).all())
    return out


def _prepared(points: np.ndarray | Sequence[Sequence[float]], modes: Sequence[str], resolution: float) -> np.ndarray:
    """Minimised, with differences below the resolution made ties: what fronts and crowding compare."""
    return as_minimised(resolve_ties(points, resolution), modes)


def _dominates_matrix(p: np.ndarray) -> np.ndarray:
    """``d[i, j]``: minimised point i dominates point j (O(n^2 m) memory; fronts here are small)."""
    le = (p[:, None, :] <= p[None, :, :]).all(axis=2)
    lt = (p[:, None, :] < p[None, :, :]).any(axis=2)
    return np.logical_and(le, lt)


def _ranks_minimised(p: np.ndarray) -> np.ndarray:
    n = p.shape[0]
    ranks = np.zeros(n, dtype=int)
    valid = ~np.isnan(p).any(axis=1)
    idx = np.flatnonzero(valid)
    front = 0
    if idx.size:
        dom = _dominates_matrix(p[idx])
        # Deb et al. 2002: how many points dominate each point; peel off the
        # undominated, discount what they dominate, repeat.
        count = dom.sum(axis=0)
        assigned = np.zeros(idx.size, dtype=bool)
        current = count == 0
        while current.any():
            ranks[idx[current]] = front
            assigned |= current
            count = count - dom[current].sum(axis=0)
            current = (count == 0) & ~assigned
            front += 1
    ranks[~valid] = front  # NaN rows: one last front after every finite one
    return ranks


def nondominated_ranks(points: np.ndarray | Sequence[Sequence[float]], modes: Sequence[str], *,
                       resolution: float = RESOLUTION) -> np.ndarray:
    """Front index of each point (0 = Pareto front), by fast non-dominated sorting
    (Deb et al. 2002, NSGA-II). Equal points (equal up to ``resolution``, see
    ``resolve_ties``) do not dominate each other, so duplicates share a front.
    Rows with a NaN form one extra front after all others."""
    return _ranks_minimised(_prepared(points, modes, resolution))


def _crowding_of_front(p: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of one front of finite (minimised) points.

    Exact duplicates: the first copy (lowest index) carries the distance computed
    over the distinct points, later copies get 0 (a copy adds no spread; as pymoo
    does), so the distance does not depend on how many times a point repeats.
    """
    k = p.shape[0]
    out = np.zeros(k)
    _, first = np.unique(p, axis=0, return_index=True)
    first = np.sort(first)
    q = p[first]
    u = q.shape[0]
    if u <= 2:
        out[first] = np.inf
        return out
    dist = np.zeros(u)
    for j in range(q.shape[1]):
        col = q[:, j]
        lo, hi = col.min(), col.max()
        span = hi - lo
        if not span > 0:  # a constant objective separates nothing (and would divide by 0)
            continue
        order = np.lexsort((np.arange(u), col))  # by value, ties by index: deterministic
        dist[order[0]] = np.inf
        dist[order[-1]] = np.inf
        with np.errstate(invalid="ignore"):
            gaps = (col[order[2:]] - col[order[:-2]]) / span
        dist[order[1:-1]] += np.nan_to_num(gaps, nan=0.0, posinf=np.inf)
    out[first] = dist
    return out


def crowding_distance(points: np.ndarray | Sequence[Sequence[float]], modes: Sequence[str],
                      ranks: np.ndarray | None = None, *, resolution: float = RESOLUTION) -> np.ndarray:
    """NSGA-II crowding distance of each point, computed within its own front.

    Per objective, a front's points are sorted; the two extremes get ``inf`` and
    each other point the gap between its two neighbours divided by the front's
    range in that objective (so objectives of different scales weigh the same).
    A constant objective contributes 0. Fronts of one or two (distinct) points
    are all extremes. NaN rows get 0. ``ranks`` defaults to ``nondominated_ranks``.
    Values equal up to ``resolution`` are equal here (an objective constant up to
    float rounding is constant, and contributes 0).
    """
    p = _prepared(points, modes, resolution)
    return _crowding_minimised(p, _ranks_minimised(p) if ranks is None else np.asarray(ranks))


def _crowding_minimised(p: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Crowding distance of already prepared points: ``pareto_order`` reuses its
    ranks here rather than resolving and sorting the points a second time."""
    if ranks.shape != (p.shape[0],):
        raise ValueError(f"ranks of shape {ranks.shape} for {p.shape[0]} points")
    out = np.zeros(p.shape[0])
    valid = ~np.isnan(p).any(axis=1)
    for r in np.unique(ranks[valid]):
        members = np.flatnonzero(valid & (ranks == r))
        out[members] = _crowding_of_front(p[members])
    return out


def pareto_order(points: np.ndarray | Sequence[Sequence[float]], modes: Sequence[str], *,
                 resolution: float = RESOLUTION) -> np.ndarray:
    """Indices of the points best first: by front, then by larger crowding distance
    (the more isolated point keeps more of the front's spread), then by index so
    that the order is deterministic."""
    p = _prepared(points, modes, resolution)
    ranks = _ranks_minimised(p)
    crowd = _crowding_minimised(p, ranks)
    return np.lexsort((np.arange(p.shape[0]), -crowd, ranks))


def pareto_front_mask(points: np.ndarray | Sequence[Sequence[float]], modes: Sequence[str], *,
                      resolution: float = RESOLUTION) -> np.ndarray:
    """True for the non-dominated points (never for a row with a NaN); values equal
    up to ``resolution`` are ties."""
    p = _prepared(points, modes, resolution)
    return (_ranks_minimised(p) == 0) & ~np.isnan(p).any(axis=1)


def _hv2(p: np.ndarray, r: np.ndarray) -> float:
    """2-D hypervolume by a sweep: sorted by the first objective, each point adds
    the strip between its second objective and the best second objective so far."""
    order = np.lexsort((p[:, 1], p[:, 0]))
    x, y = p[order, 0], p[order, 1]
    best_before = np.concatenate(([r[1]], np.minimum.accumulate(y)[:-1]))
    return float(np.sum((r[0] - x) * np.maximum(best_before - y, 0.0)))


def _hv(p: np.ndarray, r: np.ndarray) -> float:
    """Exact hypervolume of minimised points all strictly better than ``r``.

    m >= 3 by slicing along the last objective (HSO, While et al. 2006): between
    two consecutive values of it, the dominated region's cross-section is the
    (m-1)-dimensional region dominated by the points already passed.
    """
    if p.shape[0] == 0:
        return 0.0
    m = p.shape[1]
    if m == 1:
        return float(r[0] - p[:, 0].min())
    if m == 2:
        return _hv2(p, r)
    order = np.argsort(p[:, -1], kind="stable")
    p = p[order]
    z = np.append(p[:, -1], r[-1])
    total = 0.0
    for i in range(p.shape[0]):
        depth = z[i + 1] - z[i]
        if depth > 0:
            total += _hv(p[: i + 1, :-1], r[:-1]) * depth
    return total


def hypervolume(points: np.ndarray | Sequence[Sequence[float]], modes: Sequence[str],
                reference: Sequence[float] | np.ndarray) -> float:
    """Exact volume of the objective space that the points dominate and that
    dominates ``reference`` (the reference in the objectives' own units and directions).

    A point that is not strictly better than the reference in every objective
    (or has a NaN) adds nothing. 1 objective: the distance from the best point to
    the reference; 2: a sweep; 3 or more: recursive slicing, exponential in m but
    fine for fronts of a few hundred points in 3-4 objectives.
    """
    p = as_minimised(points, modes)
    signs = _signs(modes, p.shape[1])
    ref = np.asarray(reference, dtype=float).reshape(-1)
    if ref.shape != (p.shape[1],):
        raise ValueError(f"reference of {ref.size} values for {p.shape[1]} objectives")
    if np.isnan(ref).any():
        raise ValueError("the reference point has a NaN")
    r = ref * signs
    with np.errstate(invalid="ignore"):
        inside = (p < r).all(axis=1)
    p = p[inside]
    if p.shape[0] == 0:
        return 0.0
    # Dominated points add nothing: drop them (and duplicates) before slicing.
    p = np.unique(p[_ranks_minimised(p) == 0], axis=0)
    return _hv(p, r)


def reference_point(points: np.ndarray | Sequence[Sequence[float]], modes: Sequence[str],
                    margin: float = 0.1) -> np.ndarray:
    """A hypervolume reference point for ``points``, in the objectives' own units.

    The nadir of the finite points (the worst value per objective) moved outwards,
    away from the front, by ``margin`` times the objective's range over the points
    (``margin * max(1, |nadir|)`` where that range is 0).

    Why not the nadir itself: a point that is worst in some objective would then
    lie on the reference's boundary and add no volume, so the extremes of the front
    (best in one objective, worst in another) would not count at all. A margin in
    proportion to each objective's range keeps those extremes visible with a weight
    that does not depend on the objectives' units. The point depends on the data:
    hypervolumes are only comparable when computed with the same reference, so
    compare runs with one reference computed over all of them (or a fixed one).
    """
    p = _points(points)
    signs = _signs(modes, p.shape[1])
    finite = np.isfinite(p).all(axis=1)
    if not finite.any():
        raise ValueError("no point with every objective finite")
    q = p[finite] * signs  # minimised: the nadir is the column maximum
    nadir, best = q.max(axis=0), q.min(axis=0)
    span = nadir - best
    shift = np.where(span > 0, margin * span, margin * np.maximum(1.0, np.abs(nadir)))
    return (nadir + shift) * signs
