"""Direction: every "which way is better" decision of the report in one place."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from studies.spec.direction import Direction


@pytest.mark.parametrize("mode, best, word, optuna", [("min", 1.0, "lower", "minimize"), ("max", 3.0, "higher", "maximize")])
def test_each_decision(mode: str, best: float, word: str, optuna: str) -> None:
    d = Direction(mode)
    values = [2.0, float("nan"), 1.0, np.float64(3.0), float("inf")]
    assert d.best(values) == best                      # NaN and inf never win
    assert math.isnan(d.best([float("nan")])) and math.isnan(d.best([]))
    assert d.word == word and d.optuna == optuna
    assert d.better(best, 2.0) and not d.better(2.0, best) and not d.better(2.0, 2.0)
    assert d.improves(best - 2.0) and not d.improves(2.0 - best) and not d.improves(0.0)
    s = pd.Series([2.0, best, 2.5], index=["a", "b", "c"])
    assert d.idxbest(s) == "b"
    assert s.sort_values(ascending=d.ascending).index[0] == "b"


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        Direction("minimize")
