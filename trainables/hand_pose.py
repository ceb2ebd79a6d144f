"""Ray Tune trainable for the ``hand_pose`` family (thin: config -> core -> Tune)."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.experiments import hand_pose
from trainables._loop import train_with_tune


def train_hand_pose(config: dict[str, Any], data: dict[str, np.ndarray]) -> None:
    """``data`` (the rendered depth frames) arrives through ``tune.with_parameters``:
    loaded once on the driver, shared by every trial of a node."""
    train_with_tune(config, data, hand_pose.build)
