"""What a user's own trainable needs from this platform (a study spec names it
with ``trainable: my_pkg.my_module:train_fn``).

A user trainable is a Ray Tune function trainable ``train_fn(config)``. The
platform needs one thing from it: report every epoch with an ``epoch`` key
(ASHA's time attribute) and the study's metric. These helpers do that, save
and restore checkpoints (so a retried trial resumes), and name the device Ray
assigned; calling ``ray.tune.report`` directly works just as well.
"""

from __future__ import annotations

from typing import Any

from trainables._tune_api import load_checkpoint, report, trial_device

__all__ = ["report_epoch", "load_checkpoint", "trial_device"]


def report_epoch(metrics: dict[str, float], *, epoch: int, state: dict[str, Any] | None = None) -> None:
    """Report epoch ``epoch`` (1-based); with ``state`` (tensors, numbers, strings,
    dicts and lists of those) also save a checkpoint that ``load_checkpoint()``
    returns when the trial is resumed."""
    report({**metrics, "epoch": int(epoch)}, state=state)
