"""HParams sessions for conditional integer choices (a column with gaps reads back as float)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from studies.report.tensorboard_hparams import write_hparams
from studies.runs.trials import RunTrials


def test_conditional_integer_choice_matches_its_discrete_domain(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    trials = pd.DataFrame({
        "trial_id": ["a", "b"], "tfr": [0.0, 0.5], "tfr_sde": [np.nan, 2.0],  # not sampled when tfr == 0
        "last_val_psnr": [18.0, 19.0], "best_val_psnr": [18.5, 19.5], "epochs": [3, 3], "status": ["complete"] * 2,
    })
    run = RunTrials(trials=trials, history=pd.DataFrame(), params=["tfr", "tfr_sde"])
    root = write_hparams(tmp_path, run, metric="val_psnr", choices={"tfr": [0.0, 0.5], "tfr_sde": [0, 2, 4]})

    ea = EventAccumulator(str(root / "b"))
    ea.Reload()
    content = ea.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["tfr_sde"].number_value == 2
    assert start.hparams["tfr"].number_value == 0.5
    assert (root / "a").is_dir()


# --- One HParams row per trial, read back the way TensorBoard's dashboard reads it ---------------------------

def _dashboard(logdir: Path, first: list[str] = ()) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """TensorBoard's HParams plugin over ``logdir`` (its /experiment and /session_groups
    routes, on the Python event multiplexer; ``first``: runs to load first, since the
    plugin takes the columns from whichever experiment record it meets first).
    Returns the hparam columns, the metric columns and {row: [session runs]}."""
    import json
    import os

    import werkzeug.test
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin

    mux = EventMultiplexer()
    for run in first:
        mux.AddRun(os.path.join(logdir, run), name=run)
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    ctx = base_plugin.TBContext(logdir=str(logdir), data_provider=MultiplexerDataProvider(mux, str(logdir)),
                                multiplexer=mux, plugin_name_to_instance={})
    apps = hparams_plugin.HParamsPlugin(ctx).get_plugin_apps()
    exp = json.loads(werkzeug.test.Client(apps["/experiment"]).post("/", data=json.dumps({"experimentName": ""})).get_data())
    hparams = [h["name"] for h in exp.get("hparamInfos", [])]
    metrics = [m["name"]["tag"] for m in exp.get("metricInfos", [])]
    request = {"experimentName": "", "startIndex": 0, "sliceSize": 1000,
               "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
               "colParams": [{"hparam": h} for h in hparams] + [{"metric": m["name"]} for m in exp.get("metricInfos", [])]}
    groups = json.loads(werkzeug.test.Client(apps["/session_groups"]).post("/", data=json.dumps(request)).get_data())
    rows = {g["name"]: [s["name"] for s in g["sessions"]] for g in groups.get("sessionGroups", [])}
    return hparams, metrics, rows


class _Trial:
    """What Tune's TBXLoggerCallback reads of a trial."""

    def __init__(self, folder: Path, params: dict) -> None:
        self.local_path, self.evaluated_params = str(folder), params

    def init_local_path(self) -> None:
        Path(self.local_path).mkdir(parents=True, exist_ok=True)


_TRIALS = pd.DataFrame({  # trial "a" (the reference point) did not sample the conditional ramp_length
    "trial_id": ["a", "b", "c"], "ramp_shape": ["constant", "linear", "step"], "ramp_length": [np.nan, 0.3, 0.2],
    "lr": [1e-3, 2e-3, 3e-3], "last_val_mse": [0.5, 0.4, 0.3], "best_val_mse": [0.45, 0.35, 0.3], "epochs": [2, 2, 1],
    "status": ["complete", "complete", "stopped by ASHA"],
})


def _synthetic_run(logdir: Path, callback: object) -> Path:
    """A run folder as a search writes it: Tune's logger ``callback`` fills the trial
    folders while the trials run, then ``--report`` writes ``hparams/``."""
    run_dir = logdir / "smoke"
    for _, row in _TRIALS.iterrows():
        params = {p: row[p] for p in ("ramp_shape", "ramp_length", "lr") if not pd.isna(row[p])}
        trial = _Trial(run_dir / f"trial_{row['trial_id']}", params)
        callback.log_trial_start(trial)
        for epoch in range(1, int(row["epochs"]) + 1):
            callback.log_trial_result(epoch, trial, {"training_iteration": epoch, "epoch": epoch, "val_mse": 1.0 / epoch,
                                                     "config": params})
        callback.log_trial_end(trial)
    run = RunTrials(trials=_TRIALS, history=pd.DataFrame(), params=["ramp_shape", "ramp_length", "lr"])
    write_hparams(run_dir, run, metric="val_mse", choices={"ramp_shape": ["constant", "linear", "step"]})
    return run_dir


def test_tune_default_logger_shows_each_trial_twice(tmp_path: Path) -> None:
    """Why the tuner passes TBXScalarsCallback: with Tune's default logger the dashboard
    has a second row per trial (its trial folder), with none of the ablation's metrics."""
    from ray.tune.logger import TBXLoggerCallback

    _synthetic_run(tmp_path, TBXLoggerCallback())
    _, _, rows = _dashboard(tmp_path)
    assert sorted(s for sessions in rows.values() for s in sessions) == sorted(
        [f"smoke/hparams/{t}" for t in "abc"] + [f"smoke/trial_{t}" for t in "abc"])


def test_each_trial_is_one_hparams_row_with_its_epoch_curves_kept(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from studies.tune.tensorboard_logger import TBXScalarsCallback

    run_dir = _synthetic_run(tmp_path, TBXScalarsCallback())
    hparams, metrics, rows = _dashboard(tmp_path)
    assert rows == {t: [f"smoke/hparams/{t}"] for t in "abc"}
    assert sorted(hparams) == ["lr", "ramp_length", "ramp_shape", "status"]  # sampled ones only, and the trial's status
    assert metrics == ["hparams/val_mse", "hparams/best_val_mse", "hparams/epochs"]
    for t, epochs in zip("abc", _TRIALS["epochs"]):  # Tune's per-epoch scalars stay in the trial folder
        ea = EventAccumulator(str(run_dir / f"trial_{t}"))
        ea.Reload()
        assert [e.step for e in ea.Scalars("ray/tune/val_mse")] == list(range(1, epochs + 1))
        assert ea.Tags()["tensors"] == []  # no HParams record there


def test_dashboard_columns_do_not_depend_on_which_session_is_read_first(tmp_path: Path) -> None:
    """TensorBoard takes the columns from the first experiment record it meets; every
    session carries the same one, so a trial without a conditional parameter read
    first does not hide that column."""
    from studies.tune.tensorboard_logger import TBXScalarsCallback

    _synthetic_run(tmp_path, TBXScalarsCallback())
    for first in "abc":
        hparams, metrics, rows = _dashboard(tmp_path, first=[f"smoke/hparams/{first}"])
        assert sorted(hparams) == ["lr", "ramp_length", "ramp_shape", "status"] and len(metrics) == 3 and len(rows) == 3


def test_tbx_scalars_callback_replaces_tunes_default_and_keeps_report_free_of_ray(tmp_path: Path) -> None:
    import pickle
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import studies.report.tensorboard_hparams, sys; "
                          "print('ray' in sys.modules, 'torch' in sys.modules)"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

    from ray.tune.logger import TBXLoggerCallback
    from ray.tune.utils.callback import _create_default_callbacks

    from studies.tune.tensorboard_logger import TBXScalarsCallback

    callbacks = _create_default_callbacks([TBXScalarsCallback()])
    assert [type(c) for c in callbacks if isinstance(c, TBXLoggerCallback)] == [TBXScalarsCallback]
    # By reference, as Tune's tuner.pkl keeps it for --resume.
    assert type(pickle.loads(pickle.dumps(TBXScalarsCallback()))) is TBXScalarsCallback
