"""Ray Tune trainable for the ``cvae_video`` family (thin: config -> core -> Tune)."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.experiments import cvae_video
from trainables._loop import train_with_tune


def train_cvae_video(config: dict[str, Any], data: dict[str, np.ndarray]) -> None:
    """``data`` arrives through ``tune.with_parameters`` (the object store), so the
    clips are loaded once on the driver and shared by every trial of a node."""
    train_with_tune(config, data, cvae_video.build)
