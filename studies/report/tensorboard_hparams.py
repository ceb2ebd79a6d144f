"""TensorBoard's HParams view for a run: search-space parameters against final metrics.

Ray Tune writes per-trial scalars (``ray/tune/<key>`` per epoch) into each trial
folder; its default TBXLoggerCallback also writes an HParams session there when
a trial ends. This adds one TensorBoard run per trial under
``<run>/hparams/<trial_id>/`` holding only the parameters the search sampled
(with their choices as discrete domains) and the figures the ablation
compares: the metric at the last epoch, the best epoch's value and the epochs
run. ``tensorboard --logdir results/<study>`` shows them; filter runs with
``hparams/`` to see just these.

So that each trial is one row of the HParams dashboard, not two, the tuner
passes ``studies.tune.tensorboard_logger.TBXScalarsCallback`` (Tune's logger without
its HParams session) in place of Tune's default one.

Every session carries the same experiment record (every sampled parameter of
any trial, every metric): TensorBoard takes the dashboard's columns from the
first experiment record it finds, in no set order, so one written per trial
dropped conditional parameters a trial had not sampled.

Written with TensorBoard's own hparams protos and event writer, not
``torch.utils.tensorboard``: ``--report`` then never imports torch (3 s).
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import summary_v2 as hp
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from studies.runs.trials import RunTrials

HPARAMS_DIR = "hparams"


def _value(v: Any) -> Any:
    if isinstance(v, bool) or isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
        return v
    if hasattr(v, "item"):
        return v.item()
    return None


def _as_choice(v: Any, choices: list[Any] | None) -> Any:
    """The choice itself, so its type matches the discrete domain: a column
    with gaps (a conditional parameter) turns the choice 2 into 2.0."""
    for c in choices or ():
        if type(c) is not type(v) and not isinstance(c, bool) and c == v:
            return c
    return v


def write_hparams(run_dir: Path, run: RunTrials, *, metric: str, choices: dict[str, list[Any]]) -> Path:
    """(Re)write ``<run>/hparams/``; returns its path."""
    root = run_dir / HPARAMS_DIR
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    sessions = []
    for _, row in run.trials.iterrows():
        params = {p: _as_choice(_value(row[p]), choices.get(p)) for p in run.params if p in row and _value(row[p]) is not None}
        metrics = {f"hparams/{metric}": row[f"last_{metric}"], f"hparams/best_{metric}": row[f"best_{metric}"],
                   "hparams/epochs": float(row["epochs"])}
        metrics = {k: float(v) for k, v in metrics.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
        params["status"] = str(row["status"])
        sessions.append((str(row["trial_id"]), int(row["epochs"]), params, metrics))
    names = [p for p in [*run.params, "status"] if any(p in params for _, _, params, _ in sessions)]
    tags = list(dict.fromkeys(tag for _, _, _, metrics in sessions for tag in metrics))
    experiment = hp.hparams_config_pb([hp.HParam(p, hp.Discrete(list(choices[p])) if p in choices else None) for p in names],
                                      [hp.Metric(tag) for tag in tags])
    for trial_id, epochs, params, metrics in sessions:
        now = time.time()
        writer = EventFileWriter(str(root / trial_id))
        writer.add_event(Event(wall_time=now, summary=experiment))
        writer.add_event(Event(wall_time=now, summary=hp.hparams_pb(params, trial_id=trial_id, start_time_secs=now)))
        for key, value in metrics.items():
            writer.add_event(Event(wall_time=now, step=epochs,
                                   summary=Summary(value=[Summary.Value(tag=key, simple_value=value)])))
        writer.close()
    return root
