"""Ray Tune trainable for the ``au2blend`` family (thin: config -> core -> Tune)."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.experiments import au2blend
from trainables._loop import train_with_tune


def train_au2blend(config: dict[str, Any], data: dict[str, np.ndarray]) -> None:
    """``data`` arrives through ``tune.with_parameters`` (the object store), so the
    data set is loaded once on the driver and shared by every trial of a node."""
    train_with_tune(config, data, au2blend.build)
