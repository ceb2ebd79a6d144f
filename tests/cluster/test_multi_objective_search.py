"""The searcher with several objectives, modelled on Ray Tune's own
multi-objective OptunaSearch test (three metrics, max/min/max, a seeded random
sampler, 16 trials), run through a real Tuner: before, the run aborted with
``TypeError: unhashable type: 'list'`` and trials stopped early stayed RUNNING.
Ray 2.60's Tuner takes one ``mode`` string only, so the searcher (and the
scheduler) hold the objectives and TuneConfig names no metric.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from studies.runs.optuna_store import sqlite_storage
from studies.tune.optuna_bridge import TruthfulOptunaSearch

MAX_EPOCHS = 4
METRICS, MODES = ["a", "b", "c"], ["max", "min", "max"]


def _three_objectives(config: dict) -> None:
    from ray import tune

    for epoch in range(1, MAX_EPOCHS + 1):
        # the full-budget values are the config's own numbers (as Ray's test reports them)
        late = (MAX_EPOCHS - epoch) / MAX_EPOCHS
        tune.report({"epoch": epoch, "a": config["x"] - late, "b": config["y"] + late, "c": config["z"] - late})


def _space(trial: optuna.Trial) -> None:
    trial.suggest_float("x", 0.0, 10.0)
    trial.suggest_float("y", 0.0, 10.0)
    trial.suggest_float("z", 0.0, 10.0)


def _stop_small_x(trial_id: str, result: dict) -> bool:
    """Trials with x < 4 stop after their second epoch (as a scheduler would stop them): they must end PRUNED."""
    return result["config"]["x"] < 4.0 and result["epoch"] >= 2


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_several_objectives_are_told_truthfully(ray_four_fake_gpus, tmp_path: Path, sampler: str) -> None:
    from ray import tune

    db = tmp_path / "optuna.db"
    searcher = TruthfulOptunaSearch(
        space=_space, metric=METRICS, mode=MODES, storage=sqlite_storage(str(db)), study_name="mo",
        sampler=optuna.samplers.RandomSampler(seed=1234) if sampler == "random"
        else optuna.samplers.TPESampler(seed=1234, n_startup_trials=5),
        max_epochs=MAX_EPOCHS, time_attr="epoch")
    tuner = tune.Tuner(
        tune.with_resources(_three_objectives, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=16,
                                    max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="mo", verbose=0, stop=_stop_small_x),
    )
    grid = tuner.fit()
    assert not grid.errors

    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{db}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MAXIMIZE"]
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 16
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and complete and len(pruned) + len(complete) == 16
    for t in complete:   # every objective's full-budget value, in the spec's order
        assert t.values == pytest.approx([t.params["x"], t.params["y"], t.params["z"]])
    for t in pruned:
        assert t.values is None

    # Optuna's Pareto front is the brute-force front of the complete trials' configs.
    points = np.array([[t.params["x"], -t.params["y"], t.params["z"]] for t in complete])   # all maximised
    front = {t.number for t, p in zip(complete, points)
             if not any(np.all(q >= p) and np.any(q > p) for q in points)}
    assert {t.number for t in study.best_trials} == front
