"""TensorBoard's HParams view for a run: search-space parameters against final metrics.

Ray Tune already writes per-trial scalars (and an HParams record holding every
config key, fixed ones included) into each trial folder. This adds one
TensorBoard run per trial under ``<run>/hparams/<trial_id>/`` holding only the
parameters the search sampled (with their choices as discrete domains), and
the figures the ablation compares: the metric at the last epoch, the best
epoch's value and the epochs run. ``tensorboard --logdir results/<study>``
shows them; filter runs with ``hparams/`` to see just these.

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

from studies.report.trials import RunTrials

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
    for _, row in run.trials.iterrows():
        params = {p: _as_choice(_value(row[p]), choices.get(p)) for p in run.params if p in row and _value(row[p]) is not None}
        metrics = {f"hparams/{metric}": row[f"last_{metric}"], f"hparams/best_{metric}": row[f"best_{metric}"],
                   "hparams/epochs": float(row["epochs"])}
        metrics = {k: float(v) for k, v in metrics.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
        params["status"] = str(row["status"])
        domains = {p: hp.Discrete(list(c)) for p, c in choices.items() if p in params}
        experiment = hp.hparams_config_pb([hp.HParam(p, domains.get(p)) for p in params],
                                          [hp.Metric(tag) for tag in metrics])
        now = time.time()
        writer = EventFileWriter(str(root / str(row["trial_id"])))
        writer.add_event(Event(wall_time=now, summary=experiment))
        writer.add_event(Event(wall_time=now, summary=hp.hparams_pb(params, trial_id=str(row["trial_id"]), start_time_secs=now)))
        for key, value in metrics.items():
            writer.add_event(Event(wall_time=now, step=int(row["epochs"]),
                                   summary=Summary(value=[Summary.Value(tag=key, simple_value=value)])))
        writer.close()
    return root
