"""studies/report/screening.py on objectives whose answer is known exactly
(benchmarks/known_truth.py): the design trials are found, the intervals cover
the true main effects at about their nominal rate, a null factor is rarely
marked, and the importance puts the dominant factor first."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studies.report.screening import LEVEL_MEANS, MAIN_EFFECTS, TABLE_COLUMNS, design_trial_ids, screening_tables
from studies.runs.trials import RunTrials
from studies.spec.screening_design import design_size, screening_design

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))
import known_truth as kt  # noqa: E402
from analysis_truth import rung_truth  # noqa: E402

RUNG, MAX_EPOCHS = 2, 18


def _design_run(obj: kt.Objective, seed: int, *, extra: int = 0, num_samples: int = 180) -> tuple[RunTrials, list[dict]]:
    """Trial 0 the baseline, trials 1..N the design (sized for ``num_samples``), then
    ``extra`` random configs; each reports epochs 1..RUNG of the objective's noisy learning curve."""
    n = design_size(obj.factors, obj.bins, num_samples).n
    design = screening_design(obj.factors, obj.bins, n, seed)
    others = kt.sample_space(obj.factors, extra, np.random.default_rng(seed + 10_000)).to_dict("records")
    configs = [kt.active_config(obj, obj.baseline), *design,
               *({k: v for k, v in c.items() if v == v and v is not None} for c in others)]
    trials, history = [], []
    for i, config in enumerate(configs):
        curve = obj.trajectory(config, np.random.default_rng([seed, i]), max_epochs=MAX_EPOCHS)
        tid = f"t{i:03d}"
        history += [{"trial_id": tid, obj.metric: float(curve[e - 1]), "epoch": e} for e in range(1, RUNG + 1)]
        trials.append({"trial_id": tid, "status": "stopped by ASHA", "epochs": RUNG, "optuna_number": i,
                       **{f.name: config.get(f.name) for f in obj.factors}})
    return RunTrials(pd.DataFrame(trials), pd.DataFrame(history), [f.name for f in obj.factors]), design


def _tables(obj: kt.Objective, run: RunTrials, design: list[dict], n_boot: int = 0):
    return screening_tables(run, obj.factors, design=design, bins=obj.bins, baseline=obj.baseline, metric=obj.metric,
                            mode=obj.mode, rung=RUNG, n_boot=n_boot)


def test_the_design_trials_are_found_and_only_they():
    obj = kt.ramp_like()
    run, design = _design_run(obj, 0, extra=20)
    ids = design_trial_ids(run, obj.factors, design)
    assert ids == [f"t{i:03d}" for i in range(1, len(design) + 1)]
    # a later trial that repeats a design row is not a design trial (its Optuna number is past N)
    repeat = run.trials.iloc[[1]].assign(trial_id="late", optuna_number=len(run.trials))
    run2 = RunTrials(pd.concat([run.trials, repeat], ignore_index=True), run.history, run.params)
    assert design_trial_ids(run2, obj.factors, design) == ids
    result = _tables(obj, run, design)
    assert result is not None and result.n_design == result.n_found == result.n_at_rung == len(design)
    assert result.residual_df == len(design) - (1 + sum(len(t.table) - 1 for t in result.tables))
    assert _tables(obj, run, []) is None
    no_design = RunTrials(run.trials[~run.trials["trial_id"].isin(ids)], run.history, run.params)
    assert _tables(obj, no_design, design) is None


def test_the_tables_shape_and_scope():
    obj = kt.ramp_like()
    run, design = _design_run(obj, 1)
    result = _tables(obj, run, design, n_boot=50)
    assert [t.factor for t in result.tables] == [f.name for f in obj.factors]
    for t in result.tables:
        assert list(t.table.columns) == TABLE_COLUMNS
        assert t.table["level"].str.endswith("(ref)").sum() == 1
    by = {t.factor: t for t in result.tables}
    assert by["schedule"].reference == "constant" and by["schedule"].reference_why == "baseline in the spec"
    active = sum(r["schedule"] in ("linear", "cosine") for r in design)
    assert by["ramp_start"].n_active == by["ramp_start"].table["trials"].sum() == active == len(design) // 2
    assert "schedule in" in by["ramp_start"].scope and by["schedule"].scope == "all design trials"
    assert result.importance["factor"].iloc[0] == "schedule" and result.importance["first_share"].iloc[0] > 0.5
    imp = result.importance.set_index("factor")
    assert (imp["lo"] <= imp["hi"]).all() and result.n_boot == 50


@pytest.mark.parametrize("name, num_samples, method", [("ramp_like", 180, MAIN_EFFECTS), ("many_weak", 180, MAIN_EFFECTS),
                                                       ("many_weak", 48, LEVEL_MEANS)])
def test_intervals_cover_the_true_main_effects_and_nulls_are_rarely_marked(name, num_samples, method):
    """Over 100 simulated designs: each level's 95% interval and each difference's
    interval (at its Holm level, so at least 95%) hold the true rung marginal and
    difference in >= 90% of cases; a null factor is marked in <= 10% of designs;
    the strong factors' level order follows the truth. many_weak in 48 trials: a
    24-row design, fewer rows than its 32 main-effect parameters, so each factor alone."""
    obj = kt.OBJECTIVES[name]()
    truth = {f.name: rung_truth(obj, f.name, RUNG, n=40_000) for f in obj.factors}
    mean_hits, delta_hits, null_marked, rho = [], [], [], []
    for seed in range(100):
        run, design = _design_run(obj, seed, num_samples=num_samples)
        result = _tables(obj, run, design)
        assert result.method == method
        for t in result.tables:
            true = truth[t.factor]
            table = t.table
            ref = int(np.flatnonzero(table["level"].str.endswith("(ref)"))[0])
            mean_hits += list((table["lo"] <= true) & (true <= table["hi"]))
            true_delta = np.delete(true - true[ref], ref)
            rows = table.drop(index=ref)
            delta_hits += list((rows["delta_lo"] <= true_delta) & (true_delta <= rows["delta_hi"]))
            if t.factor in obj.null_factors:
                null_marked.append(bool((table["sig"] != "").any()))
            if np.ptp(true) > 0.1:
                rho.append(pd.Series(table["mean"].to_numpy()).corr(pd.Series(true), method="spearman"))
    assert np.mean(mean_hits) >= 0.9, np.mean(mean_hits)
    assert np.mean(delta_hits) >= 0.9, np.mean(delta_hits)
    assert np.mean(null_marked) <= 0.1, np.mean(null_marked)
    assert rho and np.mean(rho) >= 0.8, np.mean(rho)
