"""What every family's experiment does the same way, written once.

A family's experiment file keeps what is its own (the model, the loss, the
metrics) readable top to bottom; the lifecycle around it comes from here: the
seeded train/validation split, tensors over the data arrays Ray shares between
trials, the optimizer step, the per-epoch random streams that make a resumed
trial repeat an uninterrupted one, and the state saved in a checkpoint.

Precision is not a family's to decide: ``resources.precision`` alone says
whether a trial's epochs run under autocast (``trainables._loop.precision_context``
wraps them all). A family casts its model's outputs back with ``.float()``
before the losses and metrics, which then start from float32 at either precision.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from core.config import ConfigError

# Per-epoch seeds are seed * EPOCH_SEED_STRIDE + epoch: distinct for every
# (seed, epoch) of a study, whatever the number of epochs.
EPOCH_SEED_STRIDE = 100_003
# Evaluation draws (generation noise) use their own stream, so evaluating more
# or less often never shifts the training draws.
EVAL_SEED_STRIDE = 7_919


def epoch_seed(seed: int, epoch: int, *, stride: int = EPOCH_SEED_STRIDE) -> int:
    return seed * stride + epoch


def epoch_generator(seed: int, epoch: int, *, stride: int = EPOCH_SEED_STRIDE) -> torch.Generator:
    """A CPU generator for the epoch's own draws (shuffles, windows, augmentation)."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch, stride=stride))


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed torch's global stream for the epoch (dropout, reparameterisation noise:
    the same epoch draws the same masks, even after a resume) and return the
    epoch's own generator."""
    torch.manual_seed(epoch_seed(seed, epoch))
    return epoch_generator(seed, epoch)


def shuffled(idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``idx`` in the generator's random order (drawn on the CPU, so the order is
    the same on every device)."""
    return idx[torch.randperm(len(idx), generator=generator).to(idx.device)]


def random_split(n: int, val_fraction: float, seed: int, *, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, val) indices of ``n`` items: ceil(val_fraction * n) items,
    at least one, for validation, and at least one left for training."""
    if n < 2:
        raise ConfigError(f"the data has {n} item(s), expected >= 2 (one for training, one for validation)")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(math.ceil(val_fraction * n))))
    return (torch.as_tensor(np.sort(order[n_val:]), device=device),
            torch.as_tensor(np.sort(order[:n_val]), device=device))


def _native(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order (torch refuses big-endian arrays)."""
    if array.dtype.byteorder not in ("=", "|"):
        return array.astype(array.dtype.newbyteorder("="))
    return array


def shared_tensor(array: np.ndarray, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor over a data array without copying it where it can be helped.

    Arrays from Ray's object store are read-only and shared by every trial on a
    node; no experiment writes to them, so torch's warning about non-writable
    arrays is silenced. Floating-point data is cast to float32 (``dtype``
    overrides): a float64, float16 or big-endian file trains like a float32 one.
    """
    array = _native(np.asarray(array))
    if dtype is None and np.issubdtype(array.dtype, np.floating):
        dtype = torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.as_tensor(array, device=device, dtype=dtype)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, model: torch.nn.Module, grad_clip: float) -> None:
    """Backward, clip the gradient norm (``grad_clip`` > 0), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


class TorchExperiment:
    """The state every family saves: model, optimizer, the config, and the model's
    constructor arguments (so a checkpoint can be rebuilt without the study).
    ``extra_state`` / ``load_extra_state`` carry what a family fits from the
    data (a PCA), which the checkpoint's copy then overrides on resume."""

    config: Any
    device: torch.device
    model: Any                      # a torch.nn.Module with constructor_args()
    optimizer: torch.optim.Optimizer

    def __init__(self, config: Any, device: torch.device | str = "cpu") -> None:
        """Keep the config and device; seed torch so the model's initial weights
        depend on ``config.seed`` alone."""
        self.config = config
        self.device = torch.device(device)
        torch.manual_seed(config.seed)

    def step(self, loss: torch.Tensor) -> None:
        optimizer_step(self.optimizer, loss, self.model, self.config.grad_clip)

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "model_args": self.model.constructor_args(), "config": asdict(self.config), **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_extra_state(state)
