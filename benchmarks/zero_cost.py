"""A user trainable that costs (almost) nothing: a table look-up per epoch.

With it a study's wall time is the platform's own cost (Tune's turnover and
bookkeeping, Optuna's suggestion and storage, our callbacks and the report),
which is what ``benchmarks/scale.py`` measures. The objective has real
structure (two factors matter, one barely, one not at all), so TPE behaves as
on a real study and ASHA stops trials for real.
"""

from __future__ import annotations

import math
from typing import Any

from trainables.api import report_epoch

OPTIMIZER = {"adam": 0.0, "sgd": 0.30, "rmsprop": 0.10}
WIDTH = {16: 0.20, 64: 0.05, 256: 0.0}
NOISE = {"a": 0.0, "b": 0.01, "c": 0.02}


def value(config: dict[str, Any], epoch: int) -> float:
    """The metric at ``epoch``: a fixed level per config, falling as 1/epoch towards it."""
    lr_term = 0.5 * (math.log10(float(config["lr"])) + 2.0) ** 2       # best at lr = 1e-2
    level = 1.0 + OPTIMIZER[str(config["optimizer"])] + WIDTH[int(config["width"])] + NOISE[str(config["tag"])] + lr_term
    return level * (1.0 + 1.0 / epoch)


def train(config: dict[str, Any]) -> None:
    for epoch in range(1, int(config["max_epochs"]) + 1):
        report_epoch({"loss": value(config, epoch)}, epoch=epoch)


SPACE = {
    "optimizer": {"type": "categorical", "choices": list(OPTIMIZER)},
    "width": {"type": "categorical", "choices": list(WIDTH)},
    "tag": {"type": "categorical", "choices": list(NOISE)},
    "lr": {"type": "float", "low": 1.0e-4, "high": 1.0, "log": True},
}
