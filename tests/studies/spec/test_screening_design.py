"""studies/spec/screening_design.py: a balanced, space-filling start over the declared
space (levels and pairs balanced, `when` respected, deterministic), its size,
the spec's `search.startup` / `search.design_trials`, and the rows reaching
Optuna as trials 1..N after the reference point, once, even across a resume."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import ray.cloudpickle as cloudpickle
from optuna.trial import TrialState

from studies._compat import searcher_study
from studies.errors import UserError
from studies.report.ablation import level_labels
from studies.spec.param import Param
from studies.spec.screening_design import design_size, design_trials, factor_levels, screening_design, spec_design
from studies.spec.study import STUDIES_DIR, load_spec
from studies.tune.tuner import OPTUNA_DB, build_sampler, build_searcher

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))
import known_truth as kt  # noqa: E402

BUNDLED_SPEC = STUDIES_DIR / "mdn_ramp.yaml"


def _labels(rows: list[dict], params: list[Param], bins: dict) -> pd.DataFrame:
    """Each row's level of each factor, as the report names it ("(not sampled)" where inactive)."""
    frame = pd.DataFrame([{p.name: r.get(p.name) for p in params} for r in rows])
    out = {}
    for p in params:
        col = frame[p.name].astype(object).where(frame[p.name].notna(), None)
        out[p.name] = level_labels(col, p, bins.get(p.name) if p.numeric else None)
    return pd.DataFrame(out)


def _active(labels: pd.Series) -> pd.Series:
    return labels[labels != "(not sampled)"]


@pytest.mark.parametrize("name", sorted(kt.OBJECTIVES))
def test_every_factor_level_appears_equally_often(name):
    obj = kt.OBJECTIVES[name]()
    size = design_size(obj.factors, obj.bins, 180)
    rows = screening_design(obj.factors, obj.bins, size.n, seed=3)
    assert len(rows) == size.n and size.balanced
    labels = _labels(rows, obj.factors, obj.bins)
    for p in obj.factors:
        counts = _active(labels[p.name]).value_counts()
        declared = [lv.label for lv in factor_levels(p, obj.bins.get(p.name))]
        assert sorted(counts.index) == sorted(declared), p.name          # every level is there, no other
        assert counts.max() - counts.min() <= 1, (p.name, counts.to_dict())
        assert "out of bins" not in set(labels[p.name])


def _pair_imbalance(rows: list[dict], obj: kt.Objective) -> float:
    """Sum over pairs of factors of the chi-square distance of their level table from uniform counts."""
    labels = _labels(rows, obj.factors, obj.bins)
    total = 0.0
    for a, b in itertools.combinations(labels.columns, 2):
        table = pd.crosstab(labels[a], labels[b]).to_numpy()
        assert table.shape == (labels[a].nunique(), labels[b].nunique()) and (table > 0).all()   # every pair appears
        expected = table.sum() / table.size
        total += float(((table - expected) ** 2 / expected).sum())
    return total


def test_pairs_of_factors_are_balanced(monkeypatch):
    """Every pair of levels of every two factors appears, and the swaps bring the
    pair tables well closer to uniform than the balanced columns they start from."""
    import studies.spec.screening_design as sd

    obj = kt.many_weak()
    design = _pair_imbalance(screening_design(obj.factors, obj.bins, 48, seed=0), obj)
    monkeypatch.setattr(sd, "MAX_SWEEPS", 0)
    monkeypatch.setattr(sd, "RESTARTS", 1)
    unimproved = _pair_imbalance(screening_design(obj.factors, obj.bins, 48, seed=0), obj)
    assert design < 0.85 * unimproved, (design, unimproved)


def test_an_orthogonal_array_when_a_size_fits():
    """Four 3-level factors in 9 rows: every pair of levels exactly once (an OA of strength 2)."""
    params = [Param(f"f{i}", "categorical", ("a", "b", "c")) for i in range(4)]
    assert design_size(params, {}, 200).n >= 9
    rows = screening_design(params, {}, 9, seed=1)
    for a, b in itertools.combinations(range(4), 2):
        pairs = {(r[f"f{a}"], r[f"f{b}"]) for r in rows}
        assert len(pairs) == 9


def test_a_conditional_factor_is_set_only_where_active_and_balanced_there():
    obj = kt.ramp_like()
    rows = screening_design(obj.factors, obj.bins, 36, seed=5)
    on = [r for r in rows if r["schedule"] in ("linear", "cosine")]
    assert all(("ramp_start" in r) == (r["schedule"] in ("linear", "cosine")) for r in rows)
    assert len(on) == 18                               # the parent itself is balanced: 9 rows per schedule
    labels = _labels(on, obj.factors, obj.bins)["ramp_start"]
    counts = labels.value_counts()
    assert len(counts) == 4 and counts.max() - counts.min() <= 1
    # and over each activating schedule, not all of one kind
    for schedule in ("linear", "cosine"):
        sub = _labels([r for r in on if r["schedule"] == schedule], obj.factors, obj.bins)["ramp_start"]
        assert sub.nunique() >= 3


def test_the_design_is_deterministic_for_a_seed():
    obj = kt.ramp_like()
    a = screening_design(obj.factors, obj.bins, 36, seed=7)
    assert a == screening_design(obj.factors, obj.bins, 36, seed=7)
    assert a != screening_design(obj.factors, obj.bins, 36, seed=8)


def test_values_lie_in_their_declared_range_on_their_scale_and_grid():
    params = [Param("lr", "float", log=True, low=1e-4, high=1e-1), Param("width", "int", low=16, high=128),
              Param("layers", "int", low=1, high=3), Param("p", "float", low=0.0, high=0.5, step=0.05),
              Param("kind", "categorical", ("x", "y"))]
    rows = screening_design(params, {}, 24, seed=0)
    lr = np.array([r["lr"] for r in rows])
    assert ((lr >= 1e-4) & (lr <= 1e-1)).all()
    # log scale: as many values per decade in the low decades as in the high ones (a linear draw would put
    # nearly all of them above 1e-2)
    assert np.sum(lr < 1e-2) >= 12
    assert all(isinstance(r["width"], int) and 16 <= r["width"] <= 128 for r in rows)
    assert sorted({r["layers"] for r in rows}) == [1, 2, 3]           # <= 6 values: the values are the levels
    assert all(abs(r["p"] / 0.05 - round(r["p"] / 0.05)) < 1e-9 and 0 <= r["p"] <= 0.5 for r in rows)
    # inside a bin the values spread (Sobol), they are not one point per bin
    assert len({round(x, 9) for x in lr}) == len(lr)


def test_design_size_from_the_levels_and_its_cap():
    obj = kt.ramp_like()
    size = design_size(obj.factors, obj.bins, 180)
    params = 1 + sum(len(factor_levels(p, obj.bins.get(p.name))) - 1 for p in obj.factors)
    assert size.n >= max(16, params + 8) and size.n <= 90 and size.balanced
    assert size.n % 4 == 0 and size.n % 3 == 0                       # every factor exactly balanced: 12 | 36
    small = design_size(obj.factors, obj.bins, 40)
    assert small.n <= 20 and not small.balanced and "fewer than" in small.why and small.n % 4 == 0
    assert design_size(obj.factors, obj.bins, 3).n == 1


def _spec(*overrides: str):
    return load_spec(BUNDLED_SPEC, smoke=False, overrides=list(overrides))


def test_the_spec_keys():
    spec = _spec("search.startup=design")
    assert spec.search.startup == "design" and spec.search.design_trials is None
    assert design_trials(spec) == design_size(spec.params, spec.ablation.bins, spec.budget.num_samples).n
    assert design_trials(_spec("search.startup=design", "search.design_trials=10")) == 10
    assert _spec("search.startup=random").search.startup == "random" and design_trials(_spec("search.startup=random")) == 0
    assert _spec("search.n_startup_trials=5").search.startup == "random"   # a random start of that length, as before
    assert _spec("search.sampler=random").search.startup is None
    for overrides, key in [(["search.sampler=random", "search.startup=design"], "search.startup"),
                           (["search.startup=grid"], "search.startup"),
                           (["search.startup=design", "search.n_startup_trials=5"], "search.n_startup_trials"),
                           (["search.startup=random", "search.design_trials=5"], "search.design_trials"),
                           (["search.startup=design", "search.design_trials=48"], "search.design_trials"),
                           (["search.startup=design", "search.design_trials=-1"], "search.design_trials")]:
        with pytest.raises(UserError, match=key):
            _spec(*overrides)


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_the_design_reaches_optuna_as_trials_1_to_n(tmp_path, sampler):
    spec = _spec(f"search.sampler={sampler}", "search.startup=design", "search.design_trials=8")
    rows = spec_design(spec)
    assert len(rows) == 8
    assert build_sampler(spec)._n_startup_trials == 9                 # the sampler takes over right after
    searcher = build_searcher(spec, tmp_path)
    suggested = [{k: v for k, v in searcher.suggest(f"t{i}").items() if k != "trial_seed"} for i in range(10)]
    assert suggested[0] == spec.reference_point()
    assert suggested[1:9] == rows
    assert suggested[9] not in rows
    study = optuna.load_study(study_name=spec.name, storage=f"sqlite:///{tmp_path / OPTUNA_DB}")
    by_number = {t.number: t.params for t in study.trials}
    assert [by_number[i] for i in range(1, 9)] == rows


def test_a_restored_searcher_does_not_enqueue_the_design_again(tmp_path):
    spec = _spec("search.startup=design", "search.design_trials=5")
    searcher = build_searcher(spec, tmp_path)
    study = searcher_study(searcher)

    def waiting() -> int:
        return len(study.get_trials(states=(TrialState.WAITING,)))

    assert waiting() == 6
    pickled = cloudpickle.dumps(searcher)
    searcher.suggest("t0")
    restored = cloudpickle.loads(pickled)
    restored.save(str(tmp_path / "searcher.pkl"))
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert waiting() == 5 and len(study.get_trials()) == 6


def test_a_study_of_one_trial_has_no_design() -> None:
    """``--num-samples 1``: the reference point is the study; a design row would be
    enqueued and never run (a second Optuna trial left WAITING)."""
    from studies.spec.param import Param

    params = [Param("x", "categorical", ("a", "b")), Param("lr", "float", log=True, low=1e-4, high=1e-1)]
    assert design_size(params, {}, 1).n == 0
    assert screening_design(params, {}, design_size(params, {}, 1).n, 0) == []
    assert design_size(params, {}, 2).n == 1 and 1 <= design_size(params, {}, 6).n <= 3
