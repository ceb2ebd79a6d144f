"""Designed evidence: what the designed stage runs (studies/runs/designed.py) and
the tables made from its runs (studies/report/confirmation.py): paired over
seeds, Holm-corrected, leave-one-out differences with their intervals."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from studies.errors import UserError
from studies.report.confirmation import leave_one_out, load_confirmation, paired_comparison
from studies.runs.designed import plan_designed
from studies.runs.designed_record import continue_stage
from studies.runs.run_folder import RunFolder
from studies.runs.trials import STATUS_COMPLETE, STATUS_PRUNED, RunTrials
from studies.spec.param import Param

SHAPE = Param("shape", "categorical", ("constant", "step", "linear"))
START = Param("start", "float", low=0.0, high=0.5, when={"shape": ("step", "linear")})
LENGTH = Param("length", "float", low=0.1, high=0.4, when={"shape": ("linear",)})
LR = Param("lr", "float", log=True, low=1e-4, high=1e-2)
PARAMS = [SHAPE, START, LENGTH, LR]


def _run(rows: list[tuple]) -> RunTrials:
    """(trial_id, status, last value, best value, params)"""
    trials = [{"trial_id": tid, "status": st, "epochs": 18 if st == STATUS_COMPLETE else 2, "best_loss": best,
               "last_loss": last, **{p.name: params.get(p.name) for p in PARAMS}}
              for tid, st, last, best, params in rows]
    return RunTrials(pd.DataFrame(trials), pd.DataFrame(), [p.name for p in PARAMS])


BEST = {"shape": "linear", "start": 0.2, "length": 0.3, "lr": 3e-3}
RUN = _run([
    # A pruned trial with the best single epoch never outranks a complete one: "best" is the full-budget value.
    ("p", STATUS_PRUNED, 0.9, 0.01, {"shape": "step", "start": 0.1, "lr": 1e-3}),
    ("b", STATUS_COMPLETE, 0.30, 0.25, BEST),
    ("b2", STATUS_COMPLETE, 0.30, 0.25, BEST),                     # the same config again: one candidate
    ("s", STATUS_COMPLETE, 0.40, 0.20, {"shape": "step", "start": 0.1, "lr": 1e-3}),
    ("c", STATUS_COMPLETE, 0.50, 0.50, {"shape": "constant", "lr": 1e-3}),
])


def _plan(**kw):
    args = dict(params=PARAMS, metric="loss", mode="min", baseline={"shape": "constant", "lr": 1e-3, "start": 0.0},
                factors=["shape", "start", "length", "lr"], top_k=2, confirm_seeds=3, loo_seeds=4)
    return plan_designed(RUN, **{**args, **kw})


def test_plan_confirmation_and_leave_one_out():
    plan = _plan()
    by_label = {c["label"]: c for c in plan["configs"]}
    assert by_label["top1"]["params"] == BEST and by_label["top1"]["trial_id"] == "b"
    assert by_label["top2"]["trial_id"] == "s"                        # b2 repeats top1
    # The baseline: the best config with every baseline value put in (its ramp knobs switch off).
    assert by_label["baseline"]["params"] == {"shape": "constant", "lr": 1e-3}
    # Leave-one-out: one factor at a time; switching shape off drops the knobs it enables.
    assert by_label["without:start"]["params"] == {**BEST, "start": 0.0}
    assert by_label["without:lr"]["params"] == {**BEST, "lr": 1e-3}
    assert by_label["without:shape"]["params"] == {"shape": "constant", "lr": 3e-3}
    assert plan["loo_skipped"] == {"length": "the spec names no baseline value for it"}
    # Seeds: what each role needs; top1 is both confirmed and the leave-one-out reference.
    assert by_label["top1"]["seeds"] == 4 and set(by_label["top1"]["roles"]) == {"confirm", "loo_best"}
    assert by_label["top2"]["seeds"] == by_label["baseline"]["seeds"] == 3
    assert by_label["without:lr"]["seeds"] == 4


def test_a_variant_equal_to_another_config_runs_once():
    # With lr at its baseline in the best config, removing the ramp gives the baseline config itself.
    best = {**BEST, "lr": 1e-3}
    run = _run([("b", STATUS_COMPLETE, 0.3, 0.3, best), ("c", STATUS_COMPLETE, 0.5, 0.5, {"shape": "constant", "lr": 1e-3})])
    plan = plan_designed(run, params=PARAMS, metric="loss", mode="min", baseline={"shape": "constant", "lr": 1e-3},
                         factors=["shape", "lr"], top_k=1, confirm_seeds=2, loo_seeds=3)
    labels = [c["label"] for c in plan["configs"]]
    assert labels == ["top1", "baseline"]
    base = plan["configs"][1]
    assert base["aliases"] == ["without:shape"] and base["factors"] == ["shape"] and base["seeds"] == 3
    assert plan["loo_skipped"] == {"lr": "the best config already has its baseline value"}


def _runs(values: dict[str, list[float]], seeds: list[int]) -> pd.DataFrame:
    return pd.DataFrame([{"config": c, "seed": s, "loss": v, "epochs": 18} for c, vs in values.items()
                         for s, v in zip(seeds, vs)])


def test_leave_one_out_table_is_paired_over_seeds():
    plan = _plan(top_k=1, confirm_seeds=0)
    seeds = [10, 11, 12, 13]
    values = {"top1": [0.30, 0.40, 0.35, 0.50],
              "without:shape": [0.36, 0.47, 0.40, 0.58],                  # +0.06 .. +0.08: hurts in every seed
              "without:start": [0.31, 0.39, 0.36, 0.50],                  # noise
              "without:lr": [0.29, 0.41, 0.34, 0.51]}
    res = leave_one_out({**plan, "max_epochs": 18}, _runs(values, seeds), metric="loss", mode="min")
    t = res.table.set_index("factor")
    diff = np.array(values["without:shape"]) - np.array(values["top1"])
    assert t.loc["shape", "delta"] == pytest.approx(diff.mean())
    half = stats.t.ppf(0.975, 3) * diff.std(ddof=1) / 2
    assert (t.loc["shape", "delta_lo"], t.loc["shape", "delta_hi"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert t.loc["shape", "p"] == pytest.approx(stats.ttest_rel(values["without:shape"], values["top1"]).pvalue)
    assert t.loc["shape", "best wins"] == "4/4"
    assert t.loc["start", "best wins"] == "2/4"                          # one tie (0.50 = 0.50) is no win
    ps = [t.loc[f, "p"] for f in ("shape", "start", "lr")]
    assert t.loc["shape", "p_holm"] == pytest.approx(min(1.0, 3 * min(ps))) and t.loc["shape", "sig"] != ""
    assert t.index[0] == "shape"                                         # largest effect first
    assert res.skipped == {"length": "the spec names no baseline value for it"}


def test_paired_and_unpaired_tests_disagree_and_the_paired_one_is_used():
    # A large seed effect shared by both configs: unpaired, the 0.02 gain drowns in it; paired, it is in every seed.
    seeds = [1, 2, 3, 4, 5]
    base = np.array([0.2, 0.5, 0.8, 1.1, 1.4])
    top = base - np.array([0.020, 0.022, 0.018, 0.021, 0.019])
    assert stats.ttest_ind(top, base).pvalue > 0.9
    cmp = paired_comparison(pd.Series(top, index=seeds), pd.Series(base, index=seeds), "min")
    assert cmp["p"] == pytest.approx(stats.ttest_rel(top, base).pvalue) and cmp["p"] < 1e-4
    assert cmp["wins"] == "5/5"


def _write_confirmation(run_dir: Path, values: dict[str, list[float]], seeds: list[int]) -> None:
    folder = run_dir / "designed"
    folder.mkdir(parents=True)
    configs = [{"label": label, "params": {"shape": "linear"}, "trial_id": None, "roles": ["confirm"]} for label in values]
    (folder / "candidates.json").write_text(json.dumps({"configs": configs, "seeds": len(seeds), "max_epochs": 2,
                                                        "confirm": True, "leave_one_out": False}))
    n = 0
    for label, vs in values.items():
        for seed, v in zip(seeds, vs):
            d = folder / f"trial_{n}"
            d.mkdir()
            (d / "params.json").write_text(json.dumps({"seed": seed, "confirm_label": label}))
            (d / "result.json").write_text("\n".join(json.dumps({"epoch": e, "loss": v}) for e in (1, 2)) + "\n")
            n += 1


def test_confirmation_is_paired_and_holm_corrected(tmp_path: Path):
    seeds = [1, 2, 3, 4, 5]
    base = np.array([0.2, 0.5, 0.8, 1.1, 1.4])
    rng = np.random.default_rng(0)
    values = {"top1": list(base - 0.02 + rng.normal(0, 0.002, 5)),      # paired: tiny p; unpaired: p ~ 1
              "top2": list(base - 0.02 + rng.normal(0, 0.015, 5)),
              "baseline": list(base)}
    _write_confirmation(tmp_path, values, seeds)
    res = load_confirmation(tmp_path, metric="loss", mode="min")
    s = res.summary.set_index("config")
    raw = {c: stats.ttest_rel(values[c], values["baseline"]).pvalue for c in ("top1", "top2")}
    assert s.loc["top1", "p"] == pytest.approx(raw["top1"]) and s.loc["top1", "sig"] != ""
    assert s.loc["top2", "p"] == pytest.approx(raw["top2"])
    lo, hi = sorted(raw.values())
    assert sorted([s.loc["top1", "p_holm"], s.loc["top2", "p_holm"]]) == pytest.approx([2 * lo, max(2 * lo, hi)])
    assert (s["sig"].fillna("") != "").sum() == int(2 * lo < 0.05) + int(max(2 * lo, hi) < 0.05)
    assert s.loc["top1", "wins"] == "5/5"


def test_holm_removes_a_mark_that_raw_p_would_give(tmp_path: Path):
    # Two configs, each with a raw paired p between 0.025 and 0.05: Holm (x2 for the smaller) leaves both unmarked.
    seeds = [1, 2, 3, 4]
    base = np.array([1.0, 1.2, 0.9, 1.1])
    values = {"top1": list(base - np.array([0.05, 0.01, 0.03, 0.02])), "top2": list(base - np.array([0.04, 0.008, 0.03, 0.018])),
              "baseline": list(base)}
    raw = [stats.ttest_rel(values[c], values["baseline"]).pvalue for c in ("top1", "top2")]
    assert all(0.025 < p < 0.05 for p in raw), raw
    _write_confirmation(tmp_path, values, seeds)
    s = load_confirmation(tmp_path, metric="loss", mode="min").summary.set_index("config")
    assert (s.loc[["top1", "top2"], "p"] < 0.05).all()
    assert (s.loc[["top1", "top2"], "sig"] == "").all() and (s.loc[["top1", "top2"], "p_holm"] >= 0.05).all()
    assert not math.isnan(s.loc["top1", "p_holm"])


def test_a_swept_factor_gets_a_variant_per_choice_and_its_rows_in_the_table():
    """``sweep``: the best config with the factor at each of its other choices,
    besides the leave-one-out variant at the baseline; the leave-one-out table
    then compares every level with the best one at the full budget."""
    from studies.report.confirmation import leave_one_out

    plan = plan_designed(RUN, params=PARAMS, metric="loss", mode="min", baseline={"shape": "constant", "lr": 1e-3},
                         factors=["shape", "lr"], top_k=1, confirm_seeds=0, loo_seeds=2, sweep=["shape"])
    best = next(c for c in plan["configs"] if "loo_best" in c["roles"])
    shapes = sorted(c["params"]["shape"] for c in plan["configs"] if "shape" in c.get("factors", []))
    others = sorted(str(c) for c in SHAPE.choices if c != best["params"]["shape"])
    assert shapes == others                      # every other choice once, the baseline's among them
    runs = pd.DataFrame([{"config": c["label"], "seed": s, "loss": 1.0 + 0.1 * i + 0.01 * s, "epochs": 18}
                         for i, c in enumerate(plan["configs"]) for s in (0, 1)])
    table = leave_one_out({**plan, "max_epochs": 18}, runs, metric="loss", mode="min").table
    assert table is not None
    assert sorted(table.loc[table["factor"] == "shape", "set to"]) == [f"shape={s}" for s in shapes]


def test_a_config_seed_that_ran_twice_is_refused_not_pooled(tmp_path: Path):
    """Two runs of one seed counted as two seeds is pseudo-replication: the report refuses it, naming both folders."""
    _write_confirmation(tmp_path, {"top1": [0.1, 0.2], "baseline": [0.3, 0.4]}, [1, 2])
    twin = tmp_path / "designed" / "trial_twin"
    shutil.copytree(tmp_path / "designed" / "trial_0", twin)
    with pytest.raises(UserError, match=r"config top1 with seed 1 ran to the end more than once \(trial_0, trial_twin\)"):
        load_confirmation(tmp_path, metric="loss", mode="min")
    shutil.rmtree(twin)
    assert load_confirmation(tmp_path, metric="loss", mode="min").summary.set_index("config").loc["top1", "seeds"] == 2


def test_a_stage_that_continues_keeps_done_runs_and_sets_unfinished_ones_aside(tmp_path: Path):
    _write_confirmation(tmp_path, {"top1": [0.1, 0.2], "baseline": [0.3, 0.4]}, [1, 2])
    cut = tmp_path / "designed" / "trial_3"   # baseline, seed 2: stopped after epoch 1
    (cut / "result.json").write_text(json.dumps({"epoch": 1, "loss": 0.4}) + "\n")
    folder = RunFolder(tmp_path)
    done = continue_stage(folder, max_epochs=2)
    assert done == {("top1", 1), ("top1", 2), ("baseline", 1)}
    assert not cut.exists() and (folder.designed_interrupted / "trial_3" / "result.json").is_file()
    assert continue_stage(folder, max_epochs=2) == done   # nothing more to set aside
    runs = load_confirmation(tmp_path, metric="loss", mode="min").runs
    assert sorted(zip(runs["config"], runs["seed"])) == [("baseline", 1), ("top1", 1), ("top1", 2)]
