"""Known-truth checks of studies/spec/pareto.py: fronts, crowding distances and
hypervolumes computed by hand, and properties checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from studies.spec.pareto import (
    RESOLUTION,
    as_minimised,
    crowding_distance,
    hypervolume,
    nondominated_ranks,
    pareto_front_mask,
    pareto_order,
    reference_point,
    resolve_ties,
)

INF = np.inf


# --- fronts -----------------------------------------------------------------------------------

def test_fronts_by_hand_with_a_duplicate_and_a_nan_row() -> None:
    points = [[1, 5], [2, 3], [3, 4], [4, 1], [5, 5], [2, 3], [np.nan, 0]]
    # front 0: (1,5) (2,3) (4,1) and the copy of (2,3); (3,4) is dominated by (2,3) only;
    # (5,5) by (3,4) too; the NaN row goes after every finite front.
    assert nondominated_ranks(points, ["min", "min"]).tolist() == [0, 0, 1, 0, 2, 0, 3]
    assert pareto_front_mask(points, ["min", "min"]).tolist() == [True, True, False, True, False, True, False]


def test_fronts_follow_the_modes() -> None:
    # loss (min), accuracy (max)
    a, b, c, d, e = [0.1, 0.9], [0.2, 0.95], [0.2, 0.8], [0.3, 0.95], [0.05, 0.5]
    points = [a, b, c, d, e]
    # a, b, e: none better in both; c is worse than a (and b), d worse than b; c, d incomparable.
    assert nondominated_ranks(points, ["min", "max"]).tolist() == [0, 0, 1, 1, 0]
    # both minimised, the same points sort quite differently: e dominates everything.
    assert nondominated_ranks(points, ["min", "min"]).tolist() == [1, 2, 1, 3, 0]
    # maximising both is minimising the negated points
    assert nondominated_ranks(points, ["max", "max"]).tolist() == nondominated_ranks(-np.array(points), ["min", "min"]).tolist()
    assert as_minimised(points, ["min", "max"])[:, 1].tolist() == [-0.9, -0.95, -0.8, -0.95, -0.5]


def test_duplicates_share_a_front_and_a_partial_nan_ranks_last() -> None:
    points = [[1, 1], [1, 1], [2, 2], [2, 2], [np.nan, 0.0], [0.0, np.nan]]
    assert nondominated_ranks(points, ["min", "min"]).tolist() == [0, 0, 1, 1, 2, 2]
    only_nan = [[np.nan, 1.0], [np.nan, np.nan]]
    assert nondominated_ranks(only_nan, ["min", "min"]).tolist() == [0, 0]
    assert not pareto_front_mask(only_nan, ["min", "min"]).any()


def test_one_objective_ranks_are_the_distinct_value_ranks() -> None:
    values = np.array([[3.0], [1.0], [2.0], [1.0], [5.0]])
    assert nondominated_ranks(values, ["min"]).tolist() == [2, 0, 1, 0, 3]
    assert nondominated_ranks(values, ["max"]).tolist() == [1, 3, 2, 3, 0]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        nondominated_ranks([[1, 2]], ["min"])
    with pytest.raises(ValueError):
        nondominated_ranks([[1, 2]], ["min", "maximise"])
    with pytest.raises(ValueError):
        nondominated_ranks([1, 2], ["min", "min"])


@pytest.mark.parametrize("seed", range(6))
def test_ranks_agree_with_brute_force_dominance(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = 2 + seed % 3
    modes = [["min", "max"][k] for k in rng.integers(0, 2, m)]
    points = rng.integers(0, 6, size=(60, m)).astype(float)  # a coarse grid: many ties and duplicates
    points[rng.random(60) < 0.05, 0] = np.nan
    ranks = nondominated_ranks(points, modes)
    signs = np.array([1.0 if x == "min" else -1.0 for x in modes])
    q = points * signs

    def dominates(i: int, j: int) -> bool:
        return bool(np.all(q[i] <= q[j]) and np.any(q[i] < q[j]))

    finite = [i for i in range(60) if not np.isnan(q[i]).any()]
    for j in finite:
        dominators = [i for i in finite if dominates(i, j)]
        # a point's front is one past its best-ranked dominator's
        assert ranks[j] == (0 if not dominators else 1 + max(ranks[i] for i in dominators))
        assert all(ranks[i] < ranks[j] for i in dominators)
    nan_rows = [i for i in range(60) if i not in finite]
    assert all(ranks[i] == max(ranks[finite]) + 1 for i in nan_rows)
    assert pareto_front_mask(points, modes).tolist() == [i in finite and ranks[i] == 0 for i in range(60)]


# --- crowding distance -------------------------------------------------------------------------

FRONT = np.array([[0.0, 10.0], [1.0, 6.0], [3.0, 4.0], [6.0, 1.0], [10.0, 0.0]])
# By hand, both ranges 10: x neighbours of (1,6): 0 and 3 -> 0.3; y neighbours: 10 and 4 -> 0.6 => 0.9.
# (3,4): (6-1)/10 + (6-1)/10 = 1.0; (6,1): (10-3)/10 + (4-0)/10 = 1.1; the two extremes: inf.
FRONT_CROWDING = [INF, 0.9, 1.0, 1.1, INF]


def test_crowding_distance_of_a_front_by_hand() -> None:
    assert crowding_distance(FRONT, ["min", "min"]) == pytest.approx(FRONT_CROWDING)


def test_crowding_is_normalised_per_objective_and_follows_the_modes() -> None:
    scaled = FRONT * [1.0, 1000.0]
    assert crowding_distance(scaled, ["min", "min"]) == pytest.approx(FRONT_CROWDING)
    flipped = FRONT * [1.0, -1.0]  # the second objective maximised: the same front
    assert crowding_distance(flipped, ["min", "max"]) == pytest.approx(FRONT_CROWDING)


def test_a_constant_objective_adds_nothing_and_marks_no_extreme() -> None:
    shuffle = [1, 0, 4, 2, 3]  # the first and last rows are interior points
    with_constant = np.column_stack([FRONT[shuffle], np.full(5, 7.0)])
    expected = [FRONT_CROWDING[i] for i in shuffle]
    assert crowding_distance(with_constant, ["min", "min", "max"]) == pytest.approx(expected)


def test_crowding_is_computed_within_each_front() -> None:
    behind = FRONT + 1.0  # a second front, each point dominated by its twin
    points = np.vstack([FRONT, behind, [[20.0, 20.0]]])
    ranks = nondominated_ranks(points, ["min", "min"])
    assert ranks.tolist() == [0] * 5 + [1] * 5 + [2]
    assert crowding_distance(points, ["min", "min"]) == pytest.approx(FRONT_CROWDING * 2 + [INF])


def test_small_fronts_duplicates_and_nan_rows() -> None:
    two = [[0.0, 1.0], [1.0, 0.0]]
    assert crowding_distance(two, ["min", "min"]).tolist() == [INF, INF]
    # a copy adds no spread: the first copy keeps the distance, the later copy gets 0
    with_copy = np.vstack([FRONT, FRONT[2], [np.nan, 1.0]])
    assert crowding_distance(with_copy, ["min", "min"]) == pytest.approx(FRONT_CROWDING + [0.0, 0.0])


def test_pareto_order_by_front_then_crowding_then_index() -> None:
    points = np.vstack([FRONT, [[5.0, 8.0], [np.nan, 0.0]]])
    # front 0: the extremes (0, 4) by index, then (6,1) 1.1, (3,4) 1.0, (1,6) 0.9; then (5,8); then NaN.
    assert pareto_order(points, ["min", "min"]).tolist() == [0, 4, 3, 2, 1, 5, 6]


# --- hypervolume -------------------------------------------------------------------------------

def _union_of_boxes(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact volume of the union of the boxes [p, ref] by inclusion-exclusion (minimised points)."""
    inside = [p for p in points if np.all(p < ref)]
    total = 0.0
    for k in range(1, len(inside) + 1):
        for subset in itertools.combinations(inside, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * float(np.prod(ref - corner))
    return total


def test_two_dimensional_staircase_by_hand() -> None:
    steps = [[1, 5], [2, 3], [4, 1]]
    # ref (6,6): strips 5*1 (y 5..6) + 4*2 (y 3..5) + 2*2 (y 1..3) = 17
    assert hypervolume(steps, ["min", "min"], [6, 6]) == pytest.approx(17.0)
    # the same staircase, maximised, against (0, 0): 5*1 + 4*2 + 2*2
    assert hypervolume([[5, 1], [4, 3], [2, 5]], ["max", "max"], [0, 0]) == pytest.approx(17.0)
    # mixed: minimise x, maximise y, reference (6, 0)
    assert hypervolume([[1, 1], [2, 3], [4, 5]], ["min", "max"], [6, 0]) == pytest.approx(5 * 1 + 4 * 2 + 2 * 2)


def test_points_not_strictly_inside_the_reference_add_nothing() -> None:
    steps = [[1, 5], [2, 3], [4, 1]]
    outside = steps + [[0, 6], [7, 0], [6, 2], [np.nan, 0]]  # on or past the reference in some objective
    assert hypervolume(outside, ["min", "min"], [6, 6]) == pytest.approx(17.0)
    assert hypervolume([[7, 7]], ["min", "min"], [6, 6]) == 0.0
    assert hypervolume(np.empty((0, 2)), ["min", "min"], [6, 6]) == 0.0


def test_one_objective_is_the_distance_to_the_reference() -> None:
    assert hypervolume([[3.0], [1.5], [9.0]], ["min"], [4.0]) == pytest.approx(2.5)
    assert hypervolume([[3.0], [1.5]], ["max"], [1.0]) == pytest.approx(2.0)


def test_three_dimensional_union_of_boxes_by_hand() -> None:
    ref = [4, 4, 4]
    a, b, c = [1, 1, 3], [3, 3, 1], [2, 2, 2]
    # |a| = 3*3*1 = 9, |b| = 1*1*3 = 3, a∩b = box from (3,3,3): 1
    assert hypervolume([a, b], ["min"] * 3, ref) == pytest.approx(11.0)
    # + |c| = 8, - a∩c (2,2,3): 4, - b∩c (3,3,2): 2, + a∩b∩c: 1  => 14
    assert hypervolume([a, b, c], ["min"] * 3, ref) == pytest.approx(14.0)


def test_three_dimensional_hypervolume_matches_monte_carlo() -> None:
    rng = np.random.default_rng(11)
    points = rng.random((8, 3))
    ref = np.ones(3)
    exact = hypervolume(points, ["min"] * 3, ref)
    samples = rng.random((400_000, 3))
    covered = np.zeros(len(samples), dtype=bool)
    for p in points:
        covered |= np.all(samples >= p, axis=1)
    estimate = covered.mean()
    sd = np.sqrt(estimate * (1 - estimate) / len(samples))
    assert abs(exact - estimate) < 4 * sd
    assert exact == pytest.approx(_union_of_boxes(points, ref), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_is_the_union_of_boxes(seed: int, m: int) -> None:
    rng = np.random.default_rng(100 * m + seed)
    modes = [["min", "max"][k] for k in rng.integers(0, 2, m)]
    points = rng.integers(0, 5, size=(7, m)).astype(float)  # ties, duplicates, dominated points
    ref = np.where(np.array(modes) == "min", 5.0, -1.0)
    signs = np.where(np.array(modes) == "min", 1.0, -1.0)
    assert hypervolume(points, modes, ref) == pytest.approx(_union_of_boxes(points * signs, ref * signs), abs=1e-9)


def test_dominated_points_and_order_do_not_change_the_hypervolume() -> None:
    rng = np.random.default_rng(5)
    for m in (2, 3):
        front = rng.random((12, m))
        front = front[pareto_front_mask(front, ["min"] * m)]
        ref = np.full(m, 1.5)
        base = hypervolume(front, ["min"] * m, ref)
        dominated = front[rng.integers(0, len(front), 30)] + rng.random((30, m)) * 0.3
        mixed = np.vstack([front, dominated])
        rng.shuffle(mixed)
        assert hypervolume(mixed, ["min"] * m, ref) == pytest.approx(base, rel=1e-12)
        # removing a front point loses volume: each front point counts
        for i in range(len(front)):
            assert hypervolume(np.delete(front, i, axis=0), ["min"] * m, ref) < base


# --- reference point ---------------------------------------------------------------------------

def test_reference_point_by_hand() -> None:
    points = [[1, 5], [2, 3], [4, 1], [5, 5], [np.nan, 100], [np.inf, 100]]
    # finite rows only. x (min): nadir 5, range 4 -> 5.4; y (max): nadir 1, range 4 -> 0.6
    assert reference_point(points, ["min", "max"]).tolist() == pytest.approx([5.4, 0.6])
    assert reference_point(points, ["min", "max"], margin=0.5).tolist() == pytest.approx([7.0, -1.0])
    # a constant objective moves by margin * max(1, |nadir|)
    assert reference_point([[1, -20], [2, -20]], ["min", "min"]).tolist() == pytest.approx([2.1, -18.0])
    assert reference_point([[1, 0.5], [2, 0.5]], ["min", "max"]).tolist() == pytest.approx([2.1, 0.4])
    with pytest.raises(ValueError):
        reference_point([[np.nan, 1.0]], ["min", "min"])


def test_with_the_default_reference_every_extreme_counts() -> None:
    front = FRONT
    ref = reference_point(front, ["min", "min"])
    base = hypervolume(front, ["min", "min"], ref)
    # at the nadir itself, the two extremes would add nothing; past it each adds some volume
    nadir = front.max(axis=0)
    assert hypervolume(front[1:], ["min", "min"], nadir) == pytest.approx(hypervolume(front, ["min", "min"], nadir))
    assert hypervolume(front[1:], ["min", "min"], ref) < base
    assert hypervolume(front[:-1], ["min", "min"], ref) < base


# --- resolution: float rounding is not a difference ----------------------------------------------

def test_resolve_ties_by_hand() -> None:
    col = [0.5 + 1e-13, 0.5, 0.5 - 1e-13, 0.7, np.nan, np.inf]
    out = resolve_ties(np.column_stack([col, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]))
    # the three values within 1e-9 * 0.7 of each other become their mean; the rest stay
    assert out[:3, 0].tolist() == [pytest.approx(0.5, abs=1e-15)] * 3 and len(set(out[:3, 0])) == 1
    assert out[3, 0] == 0.7 and np.isnan(out[4, 0]) and out[5, 0] == np.inf
    assert out[:, 1].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]   # a genuine difference is kept
    assert resolve_ties([[1.0], [1.0 + 1e-13]], rel=0.0)[:, 0].tolist() == [1.0, 1.0 + 1e-13]
    assert resolve_ties([[0.0], [0.0]])[:, 0].tolist() == [0.0, 0.0]
    assert RESOLUTION == 1e-9


def test_a_constant_objective_up_to_rounding_decides_nothing() -> None:
    # the second objective is 0.5 up to float rounding (a probe that recognised nothing): only the first separates
    noise = [1e-13, 0.0, -1e-13, 2e-13]
    points = np.column_stack([[1.0, 2.0, 3.0, 1.0], 0.5 + np.array(noise)])
    # rows 0 and 3 tie (1.0, 0.5); 1 and 2 are worse in the first objective, equal in the second
    assert nondominated_ranks(points, ["min", "min"]).tolist() == [0, 1, 2, 0]
    assert pareto_front_mask(points, ["min", "max"]).tolist() == [True, False, False, True]
    # without the resolution the 1e-13 noise would decide: rows 1 and 2 on the front, row 3 behind row 0
    assert nondominated_ranks(points, ["min", "min"], resolution=0.0).tolist() == [0, 0, 0, 1]
    # crowding: the noisy column adds nothing, exactly as a constant column does
    front = np.column_stack([FRONT, 7.0 + 7e-13 * np.array([1, -1, 1, -1, 0.5])])
    assert crowding_distance(front, ["min", "min", "min"]) == pytest.approx(FRONT_CROWDING)
    assert crowding_distance(front, ["min", "min", "min"], resolution=0.0)[1:4].tolist() != pytest.approx(FRONT_CROWDING[1:4])
    assert pareto_order(front, ["min", "min", "min"]).tolist() == [0, 4, 3, 2, 1]
