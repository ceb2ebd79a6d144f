"""The one Ray Tune trainable of every bundled family (the family is a parameter)."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.experiments.registry import get_family
from trainables._loop import train_with_tune


def train_family(config: dict[str, Any], data: dict[str, np.ndarray], family: str) -> None:
    """``data`` and ``family`` arrive through ``tune.with_parameters`` (the object
    store), so the data set is loaded once on the driver and shared by every
    trial of a node."""
    train_with_tune(config, data, get_family(family).build)
