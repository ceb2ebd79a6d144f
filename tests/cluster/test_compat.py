"""Every private Ray Tune / Optuna API the platform uses (studies/_compat.py),
exercised against the installed versions: an upgrade that moves one fails
here, by name."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import optuna
import pytest

from studies import _compat
from studies.spec.study import STUDIES_DIR, load_spec
from studies.tune.tuner import build_searcher


def test_searcher_internals(tmp_path: Path) -> None:
    spec = load_spec(STUDIES_DIR / "mdn_ramp.yaml", smoke=True)
    searcher = build_searcher(spec, tmp_path)
    assert isinstance(_compat.searcher_study(searcher), optuna.Study)
    searcher.suggest("t0")
    trials = _compat.searcher_trials(searcher)
    assert isinstance(trials["t0"], optuna.Trial)
    assert "t0" not in _compat.searcher_completed(searcher)
    searcher.on_trial_complete("t0", {"val_mse": 0.5, "epoch": spec.budget.max_epochs})
    assert "t0" in _compat.searcher_completed(searcher)
    assert _compat.searcher_study(searcher).trials[0].state == optuna.trial.TrialState.COMPLETE


def test_writing_to_a_frozen_trial() -> None:
    study = optuna.create_study()
    study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    _compat.set_trial_user_attr(study, frozen, "orphaned", True)
    _compat.set_trial_intermediate_value(study, frozen, 3, 0.25)
    again = study.get_trials()[0]
    assert again.user_attrs["orphaned"] is True and again.intermediate_values == {3: 0.25}


def _three_epochs(config: dict) -> None:
    from ray import tune

    for epoch in range(1, 4):
        tune.report({"loss": config["x"] / epoch, "epoch": epoch})


def _tuner(tmp_path: Path, name: str, callbacks: list) -> object:
    from ray import tune

    return tune.Tuner(_three_epochs, param_space={"x": tune.grid_search([1.0, 2.0])},
                      tune_config=tune.TuneConfig(metric="loss", mode="min"),
                      run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0, callbacks=callbacks))


def test_grid_trials_and_an_uninterrupted_fit(ray_four_fake_gpus, tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT)
    grid, interrupted = _compat.fit_interrupted(_tuner(tmp_path, "plain", []).fit)
    assert interrupted is False
    trials = _compat.grid_trials(grid)
    assert len(trials) == 2 and {t.status for t in trials} == {"TERMINATED"}
    assert sorted(t.config["x"] for t in trials) == [1.0, 2.0] and all(t.last_result["epoch"] == 3 for t in trials)
    signal.signal(signal.SIGINT, before)  # Tune leaves its handler installed after a normal fit


def test_a_stop_signal_is_seen(ray_four_fake_gpus, tmp_path: Path) -> None:
    """SIGUSR1 (what `ray job stop` and our kill tests send) mid-fit: Tune stops, and it is reported."""
    from ray.tune import Callback

    class StopOnFirstResult(Callback):
        sent = False

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGUSR1)

    before_usr1 = signal.getsignal(signal.SIGUSR1)
    try:
        _, interrupted = _compat.fit_interrupted(_tuner(tmp_path, "stopped", [StopOnFirstResult()]).fit)
    finally:
        signal.signal(signal.SIGUSR1, before_usr1)
    assert interrupted is True


def test_no_tune_handler_means_no_claimed_interruption(ray_four_fake_gpus, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNE_DISABLE_SIGINT_HANDLER", "1")
    before_usr1 = signal.getsignal(signal.SIGUSR1)
    try:
        _, interrupted = _compat.fit_interrupted(_tuner(tmp_path, "nohandler", []).fit)
    finally:
        signal.signal(signal.SIGUSR1, before_usr1)
    assert interrupted is False


def test_asha_rungs_read_and_put_back() -> None:
    from ray.tune.schedulers import ASHAScheduler

    def scheduler() -> ASHAScheduler:
        s = ASHAScheduler(time_attr="epoch", metric="loss", mode="min", max_t=4, grace_period=1, reduction_factor=2)
        return s

    live = scheduler()
    for i, loss in enumerate([1.0, 2.0, 3.0]):
        trial = type("T", (), {"trial_id": f"t{i}"})()
        live.on_trial_add(None, trial)
        live.on_trial_result(None, trial, {"epoch": 1, "loss": loss})
    rungs = _compat.asha_rungs(live)
    assert [[m for m, _ in b] for b in rungs] == [[4, 2, 1]] and rungs[0][2][1] == {"t0": -1.0, "t1": -2.0, "t2": -3.0}
    fresh = scheduler()
    _compat.set_asha_rungs(fresh, rungs)
    late = type("T", (), {"trial_id": "t3"})()
    fresh.on_trial_add(None, late)
    assert fresh.on_trial_result(None, late, {"epoch": 1, "loss": 2.5}) == "STOP"   # worse than the recorded median
    with pytest.raises(ValueError, match="do not fit"):
        _compat.set_asha_rungs(ASHAScheduler(time_attr="epoch", metric="loss", mode="min", max_t=8), rungs)


def test_worker_output_passes_the_filter_before_it_is_printed(ray_four_fake_gpus, capsys) -> None:
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    before = list(dispatcher.handlers)
    try:
        assert _compat.filter_worker_output(lambda lines: [line for line in lines if "noise" not in line])
        dispatcher.emit({"is_err": True, "pid": 4242, "ip": "x", "localhost": "x", "task_name": None, "actor_name": None,
                         "lines": ["kept line", "noise line"], "job": ""})
        err = capsys.readouterr().err
        assert "kept line" in err and "noise line" not in err
    finally:
        dispatcher.handlers = before


def test_study_storage_url(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}")
    assert _compat.study_storage_url(study) == f"sqlite:///{tmp_path / 'o.db'}"


def test_newest_experiment_state(tmp_path: Path) -> None:
    assert _compat.newest_experiment_state(tmp_path) is None
    for stamp in ("2026-12-02_01-00-00", "2026-12-02_01-05-00"):
        (tmp_path / f"experiment_state-{stamp}.json").write_text("{}")
    assert Path(_compat.newest_experiment_state(tmp_path)).name == "experiment_state-2026-12-02_01-05-00.json"


def test_connect_gcs(ray_four_fake_gpus) -> None:
    import ray

    _compat.connect_gcs(ray.get_runtime_context().gcs_address)   # no token auth in the test cluster: no error


def test_tune_pickles_checked_sees_the_bytes_tune_unpickles() -> None:
    """The three places Tune 2.60 unpickles a run folder's tuner.pkl and experiment state
    (Tuner.restore's pickle.loads and ExperimentAnalysis, the controller's resume) hand the
    very bytes to the check, which can refuse; the bytes of tuner.pkl Tune writes are seen."""
    from ray.tune.analysis import experiment_analysis
    from ray.tune.execution import tune_controller
    from ray.tune.impl import tuner_internal

    from studies.errors import RefusedPickle

    seen: list[tuple[str, bytes]] = []
    written: list[bytes] = []
    real_pickle = tuner_internal.pickle

    def check(what: str, data: bytes) -> None:
        seen.append((what, data))
        if data == b'"refuse"':
            raise RefusedPickle("refused")

    with _compat.tune_pickles_checked(check, written.append):
        data = tuner_internal.pickle.dumps({"a": 1})
        assert tuner_internal.pickle.loads(data) == {"a": 1}
        assert tune_controller._loads_with_cloudpickle(b'{"b": 2}') == {"b": 2}
        assert experiment_analysis._loads_with_cloudpickle(b'{"c": 3}') == {"c": 3}
        with pytest.raises(RefusedPickle):
            tune_controller._loads_with_cloudpickle(b'"refuse"')
    assert [w for w, _ in seen] == ["tuner.pkl", "experiment_state-*.json", "experiment_state-*.json", "experiment_state-*.json"]
    assert written == [data] and seen[0][1] == data
    assert tuner_internal.pickle is real_pickle   # all put back
    assert tune_controller._loads_with_cloudpickle is experiment_analysis._loads_with_cloudpickle
