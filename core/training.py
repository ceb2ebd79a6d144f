"""One generic epoch loop that every family uses, with or without Ray.

A family provides an :class:`Experiment` (train one epoch, evaluate, save and
load its state); the loop runs the epochs, refuses non-finite losses and hands
each epoch's metrics to a callback. Under Ray Tune that callback reports to
Tune; in a plain script or a benchmark it can print or collect.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol


class Experiment(Protocol):
    def train_epoch(self, epoch: int) -> dict[str, float]: ...
    def evaluate(self, epoch: int) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the trial cannot go on."""


def check_finite(metrics: dict[str, float], epoch: int) -> None:
    bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        raise NonFiniteLossError(f"non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} at epoch {epoch}")


# The callback receives the number of epochs completed (1-based) and the
# metrics; returning True stops training early.
EpochCallback = Callable[[int, dict[str, float]], "bool | None"]


def run_epochs(
    experiment: Experiment,
    *,
    max_epochs: int,
    start_epoch: int = 0,
    on_epoch: EpochCallback | None = None,
) -> list[dict[str, float]]:
    """Train epochs ``start_epoch .. max_epochs-1``; return every epoch's metrics."""
    history: list[dict[str, float]] = []
    for epoch in range(start_epoch, max_epochs):
        metrics: dict[str, float] = {"epoch": epoch + 1}
        train = experiment.train_epoch(epoch)
        check_finite(train, epoch + 1)
        metrics.update(train)
        metrics.update(experiment.evaluate(epoch))
        check_finite(metrics, epoch + 1)
        history.append(metrics)
        if on_epoch is not None and on_epoch(epoch + 1, metrics):
            break
    return history
