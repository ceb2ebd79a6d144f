"""Config -> experiment -> generic loop -> Tune: the trial body of every trainable,
the bundled families' and a user's own (``trainables.api.experiment_trainable``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from core.training import Experiment, run_epochs
from trainables import _tune_api

# Keys the platform adds to every trial's config; families do not see them.
PLATFORM_KEYS = frozenset({"checkpoint_every", "cpus_per_trial", "confirm_label", "precision", "trial_seed"})


def precision_context(precision: str, device: torch.device) -> torch.autocast:
    """``resources.precision``: bf16 runs the epochs under ``torch.autocast`` in
    bfloat16 on the trial's device (matmuls and convolutions in bf16, reductions
    and the weights in float32; no loss scaling needed, unlike fp16); fp32 runs them as written,
    on a CPU and a GPU alike. The one precision knob: no family config has a switch of its own."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def run_trial(config: dict[str, Any], make: Callable[[dict[str, Any], torch.device], Experiment]) -> None:
    """Run one trial: build, resume from Tune's checkpoint if any, train, report each
    epoch (NaN and inf refused by ``run_epochs``), checkpoint every
    ``checkpoint_every`` epochs and at the last."""
    threads = int(config.get("cpus_per_trial", 1) or 1)
    torch.set_num_threads(max(1, threads))
    device = _tune_api.trial_device()
    experiment = make(config, device)
    max_epochs = int(config["max_epochs"])
    every = max(1, int(config.get("checkpoint_every", 1)))

    start_epoch = 0
    state = _tune_api.load_checkpoint()
    if state is not None:
        experiment.load_state_dict(state["experiment"])
        start_epoch = int(state["epoch"])

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        save = epoch % every == 0 or epoch == max_epochs
        checkpoint = {"experiment": experiment.state_dict(), "epoch": epoch} if save else None
        _tune_api.report(metrics, state=checkpoint)

    with precision_context(str(config.get("precision", "fp32")), device):
        run_epochs(experiment, max_epochs=max_epochs, start_epoch=start_epoch, on_epoch=on_epoch)


def train_with_tune(
    config: dict[str, Any],
    data: dict[str, np.ndarray],
    build: Callable[..., Any],
) -> None:
    """A bundled family's trial: its builder sees the shared data and its own keys only."""
    run_trial(config, lambda cfg, device: build(cfg, data, device, ignore=PLATFORM_KEYS))
