"""Ray Tune trainable for the ``hand_action`` family (thin: config -> core -> Tune)."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.experiments import hand_action
from trainables._loop import train_with_tune


def train_hand_action(config: dict[str, Any], data: dict[str, np.ndarray]) -> None:
    """``data`` (the joint sequences) arrives through ``tune.with_parameters``:
    loaded once on the driver, shared by every trial of a node."""
    train_with_tune(config, data, hand_action.build)
