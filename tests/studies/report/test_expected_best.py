"""Expected best versus budget: the unbiased estimator against cases computed by hand
and against every subset enumerated."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from studies.report.expected_best import expected_best, expected_best_curve, sentence, table_rows


def test_a_case_computed_by_hand() -> None:
    v = np.array([3.0, 1.0, 4.0, 2.0])
    # max: n=1 the mean; n=2 the six pairs' maxima 2,3,4,3,4,4; n=4 the best
    assert expected_best(v, 1, "max") == pytest.approx(2.5)
    assert expected_best(v, 2, "max") == pytest.approx(20 / 6)
    assert expected_best(v, 3, "max") == pytest.approx((3 + 4 + 4 + 4) / 4)
    assert expected_best(v, 4, "max") == pytest.approx(4.0)
    # min: the six pairs' minima 1,1,1,2,2,3
    assert expected_best(v, 2, "min") == pytest.approx(10 / 6)
    assert expected_best(v, 4, "min") == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_equals_the_mean_best_over_every_subset(mode: str) -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(size=9)
    pick = min if mode == "min" else max
    for n in range(1, 10):
        subsets = list(itertools.combinations(v, n))
        assert expected_best(v, n, mode) == pytest.approx(np.mean([pick(s) for s in subsets]), rel=1e-12)


def test_ties_and_non_finite_values() -> None:
    v = np.array([1.0, 1.0, np.nan, 2.0, np.inf])
    assert expected_best(v, 3, "max") == pytest.approx(2.0)   # the finite ones: 1, 1, 2 (inf left out)
    with pytest.raises(ValueError):
        expected_best(v, 4, "max")


def test_the_curve_is_monotone_its_band_holds_it_and_its_sentence_says_its_numbers() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=30)
    eb = expected_best_curve(v, "val_loss", "min", seed=1, n_boot=200)
    assert eb is not None and list(eb.curve["n"]) == list(range(1, 31))
    assert np.all(np.diff(eb.curve["expected_best"]) <= 1e-12)   # more trials never expected to do worse
    assert eb.curve["expected_best"].iloc[0] == pytest.approx(v.mean())
    assert eb.curve["expected_best"].iloc[-1] == pytest.approx(v.min())
    assert (eb.curve["lo"] <= eb.curve["expected_best"] + 1e-12).all() and (eb.curve["expected_best"] <= eb.curve["hi"] + 1e-12).all()
    assert list(table_rows(eb)["n"]) == [1, 2, 5, 10, 20, 30]
    text = sentence(eb)
    assert f"{eb.at(15):.4g}" in text and f"{v.min():.4g}" in text and "15 trials" in text and "all 30" in text
    assert expected_best_curve(np.array([1.0]), "m", "min") is None
