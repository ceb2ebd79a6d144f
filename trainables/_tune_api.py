"""The one place that calls Ray Tune's reporting and checkpoint API.

Ray renamed this API three times (``session.report``, ``train.report``, now
``tune.report`` / ``tune.get_checkpoint``); the next rename touches this file only.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch
from ray import tune

CHECKPOINT_FILE = "checkpoint.pt"


def report(metrics: dict[str, float], *, state: dict[str, Any] | None = None) -> None:
    """Report one epoch's metrics, with a checkpoint when ``state`` is given."""
    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, os.path.join(tmp, CHECKPOINT_FILE))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def load_checkpoint() -> dict[str, Any] | None:
    """The state saved by the last checkpoint of this trial, or None on a fresh start.
    Loaded with ``weights_only=True``: a checkpoint can never run code."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return torch.load(os.path.join(folder, CHECKPOINT_FILE), map_location="cpu", weights_only=True)


def trial_device() -> torch.device:
    """The device Ray assigned: Ray sets CUDA_VISIBLE_DEVICES to this trial's GPUs
    (empty when it has none), so cuda:0 is always the trial's own GPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
