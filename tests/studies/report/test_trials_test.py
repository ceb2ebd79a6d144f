"""The trials' own least-squares test that a modelled mark must also pass
(studies/report/trials_test.py): exact on an additive truth, at its nominal
level on a null factor, silent where the data cannot tell levels apart."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from studies.report.trials_test import level_contrasts


def _labels(rng: np.random.Generator, n: int, p_b: float = 0.5) -> dict[str, pd.Series]:
    f = pd.Series(rng.choice(["a", "b", "c"], n, p=[1 - p_b - 0.2, p_b, 0.2]))
    g = pd.Series(rng.choice(["x", "y"], n))
    return {"f": f, "g": g}


def test_the_difference_is_exact_on_an_additive_truth_despite_an_unbalanced_design() -> None:
    """TPE-like imbalance: g's level y is mostly sampled with f's level b, so the
    raw means of b and a differ by more than the truth; the adjusted one does not."""
    rng = np.random.default_rng(0)
    f = pd.Series(rng.choice(["a", "b", "c"], 200))
    g = pd.Series(np.where((f == "b") & (rng.random(200) < 0.9), "y", rng.choice(["x", "y"], 200)))
    y = f.map({"a": 0.0, "b": -0.7, "c": 0.4}) + g.map({"x": 0.0, "y": 2.0}) + rng.normal(0, 1e-9, 200)
    raw = y[f == "b"].mean() - y[f == "a"].mean()
    assert abs(raw + 0.7) > 0.3                      # the raw difference is confounded with g
    (d_b, p_b), (d_c, p_c) = level_contrasts({"f": f, "g": g}, y, "f", [("b", "a"), ("c", "a")])
    assert d_b == pytest.approx(-0.7, abs=1e-6) and d_c == pytest.approx(0.4, abs=1e-6)
    assert p_b < 1e-6 and p_c < 1e-6


def test_a_null_factor_is_found_at_about_the_nominal_rate() -> None:
    """400 simulated studies, f exactly null, g strong: p < 0.05 in 3-8% of them
    (a test that found null effects more often would pass the surrogate's false marks)."""
    hits = 0
    for seed in range(400):
        rng = np.random.default_rng(seed)
        lab = _labels(rng, 60)
        y = lab["g"].map({"x": 0.0, "y": 3.0}) + rng.normal(0, 0.5, 60)
        (_, p), = level_contrasts(lab, y, "f", [("b", "a")])
        hits += p < 0.05
    assert 0.03 * 400 <= hits <= 0.08 * 400, hits


def test_a_real_difference_is_found() -> None:
    rng = np.random.default_rng(1)
    lab = _labels(rng, 80)
    y = lab["f"].map({"a": 0.0, "b": 0.5, "c": 0.0}) + lab["g"].map({"x": 0.0, "y": 3.0}) + rng.normal(0, 0.3, 80)
    (d, p), = level_contrasts(lab, y, "f", [("b", "a")])
    assert p < 1e-4 and d == pytest.approx(0.5, abs=0.2)


def test_levels_the_data_cannot_tell_apart_give_no_test() -> None:
    """f's level b only ever with g's level y (and a only with x): b - a is
    g's effect as much as f's, so there is no estimate; a level never sampled,
    or a subset too small for a residual, gives none either."""
    f = pd.Series(["a", "b"] * 10)
    g = pd.Series(["x", "y"] * 10)
    y = pd.Series(np.arange(20, dtype=float))
    assert all(math.isnan(v) for v in level_contrasts({"f": f, "g": g}, y, "f", [("b", "a")])[0])
    assert all(math.isnan(v) for v in level_contrasts({"f": f}, y, "f", [("z", "a")])[0])
    few = pd.Series([True] * 5 + [False] * 15)
    assert all(math.isnan(v) for v in level_contrasts({"f": f}, y, "f", [("b", "a")], within=few)[0])


def test_within_a_cell_only_its_trials_count() -> None:
    """f's effect flips with g: within g = x, b is better; within g = y, worse."""
    rng = np.random.default_rng(2)
    f = pd.Series(rng.choice(["a", "b"], 120))
    g = pd.Series(rng.choice(["x", "y"], 120))
    y = pd.Series(np.where(f == "b", np.where(g == "x", -1.0, 1.0), 0.0) + rng.normal(0, 0.2, 120))
    (dx, px), = level_contrasts({"f": f, "g": g}, y, "f", [("b", "a")], within=g == "x")
    (dy, py), = level_contrasts({"f": f, "g": g}, y, "f", [("b", "a")], within=g == "y")
    assert dx == pytest.approx(-1.0, abs=0.15) and dy == pytest.approx(1.0, abs=0.15)
    assert px < 1e-6 and py < 1e-6


def test_a_bin_sampled_at_one_end_is_weighted_to_its_whole_bin() -> None:
    """y rises across bin b (0 in its lower half, 1 in its upper), and a
    searcher put 90% of b's trials in the upper half: unweighted, b - a reads
    about 0.9; with both halves counting equally it reads 0.5, the bin's
    average. A level sampled in one half only has no estimate."""
    rng = np.random.default_rng(3)
    n = 400
    f = pd.Series(rng.choice(["a", "b"], n))
    half = pd.Series(np.where(f == "b", (rng.random(n) < 0.9).astype(float), (rng.random(n) < 0.5).astype(float)))
    y = pd.Series(np.where(f == "b", half, 0.0) + rng.normal(0, 0.05, n))
    (raw, _), = level_contrasts({"f": f}, y, "f", [("b", "a")])
    (weighted, p), = level_contrasts({"f": f}, y, "f", [("b", "a")], halves=half)
    assert raw == pytest.approx(0.9, abs=0.05) and weighted == pytest.approx(0.5, abs=0.03) and p < 1e-6
    lopsided = half.where(f != "b", 1.0)
    assert all(math.isnan(v) for v in level_contrasts({"f": f}, y, "f", [("b", "a")], halves=lopsided)[0])


def test_a_level_of_another_factor_sampled_once_does_not_block_the_test() -> None:
    """Under a concentrating searcher some level of some other factor holds one
    trial; that trial fixes its own coefficient and says nothing about f."""
    rng = np.random.default_rng(4)
    f = pd.Series(rng.choice(["a", "b"], 60))
    g = pd.Series(["rare"] + list(rng.choice(["x", "y"], 59)))
    y = pd.Series(np.where(f == "b", 1.0, 0.0) + rng.normal(0, 0.2, 60))
    (d, p), = level_contrasts({"f": f, "g": g}, y, "f", [("b", "a")])
    assert d == pytest.approx(1.0, abs=0.15) and p < 1e-6


def test_off_design_tells_a_concentrating_searcher_from_random_search() -> None:
    """Random search over g's declared levels passes (flagged in about 1% of 300
    samples); g concentrated on one level, or paired with f's levels, is flagged."""
    from studies.report.trials_test import off_design
    declared = ["64", "128", "256", "512"]
    flagged = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        f = pd.Series(rng.choice(["a", "b", "c"], 150))
        g = pd.Series(rng.choice(declared, 150))
        flagged += off_design(f, g, declared, "(not sampled)")
    assert flagged <= 9, flagged
    rng = np.random.default_rng(0)
    f = pd.Series(rng.choice(["a", "b"], 150))
    assert off_design(f, pd.Series(rng.choice(declared, 150, p=[0.1, 0.1, 0.1, 0.7])), declared, "(not sampled)")
    paired = pd.Series(np.where(f == "a", rng.choice(["64", "128"], 150), rng.choice(["256", "512"], 150)))
    assert off_design(f, paired, declared, "(not sampled)")
    # inactive trials are left out: g active only for half of them, at random among its levels
    half = pd.Series(np.where(rng.random(150) < 0.5, rng.choice(declared, 150), "(not sampled)"))
    assert not off_design(f, half, declared, "(not sampled)")


def test_a_conditional_child_of_the_tested_factor_is_averaged_as_the_declared_design_has_it() -> None:
    """start is active only for the non-constant shapes (a when-rule), so its
    levels are aliased with shape in an additive fit. Truth: linear's mean over
    start's declared levels (0, +0.2 equally likely) is -0.3 + 0.1 = -0.2 below
    constant; the test says so instead of giving up; crossing start as well
    (off the declared design) does not make it inestimable either."""
    rng = np.random.default_rng(5)
    shape = pd.Series(rng.choice(["constant", "linear", "step"], 300))
    start = pd.Series(np.where(shape == "constant", "(not sampled)", rng.choice(["early", "late"], 300)))
    lr = pd.Series(rng.choice(["lo", "hi"], 300))
    y = (shape.map({"constant": 0.0, "linear": -0.3, "step": 0.0}) + start.map({"early": 0.0, "late": 0.2}).fillna(0.0)
         + lr.map({"lo": 0.0, "hi": 0.5}) + rng.normal(0, 0.05, 300))
    labels = {"shape": shape, "start": start, "lr": lr}
    for crossed in ((), ("start", "lr")):
        (d, p), = level_contrasts(labels, y, "shape", [("linear", "constant")], crossed=crossed)
        assert d == pytest.approx(-0.2, abs=0.03) and p < 1e-6, crossed
