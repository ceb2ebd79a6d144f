"""Importance on a large study: fANOVA on a seeded sample, said in the table,
still ranking a planted factor first."""

from __future__ import annotations

import numpy as np
import pandas as pd

from studies.report import importance
from studies.report.importance import param_importances
from studies.spec.param import Param

SPACE = [Param("big", "categorical", ("a", "b", "c")), Param("small", "float", low=0.0, high=1.0),
         Param("null", "float", low=0.0, high=1.0)]


def _trials(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    configs = pd.DataFrame({"big": rng.choice(["a", "b", "c"], n), "small": rng.uniform(0, 1, n), "null": rng.uniform(0, 1, n)})
    values = configs["big"].map({"a": 0.0, "b": 1.0, "c": 2.0}) + 0.3 * configs["small"] + rng.normal(0, 0.05, n)
    return configs, values


def test_fanova_above_the_cap_is_fitted_on_a_seeded_sample_and_says_so() -> None:
    configs, values = _trials(3 * importance.FANOVA_MAX_TRIALS)
    table = param_importances(configs, values, SPACE, mode="min", seed=1).set_index("parameter")
    assert list(table.sort_values("fanova_variance", ascending=False).index) == ["big", "small", "null"]
    cap = importance.FANOVA_MAX_TRIALS
    assert (table["scored_on"] == f"all (fANOVA: a random {cap})").all()
    assert (table["trials"] == 3 * cap).all()                       # PED-ANOVA and the count: every trial
    again = param_importances(configs, values, SPACE, mode="min", seed=1).set_index("parameter")
    assert np.allclose(again["fanova_variance"], table["fanova_variance"])   # seeded: the same sample


def test_fanova_below_the_cap_uses_every_trial() -> None:
    configs, values = _trials(60)
    table = param_importances(configs, values, SPACE, mode="min", seed=1).set_index("parameter")
    assert (table["scored_on"] == "all").all() and table["fanova_variance"].idxmax() == "big"
