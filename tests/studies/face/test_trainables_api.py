"""trainables.api: a user's experiment gets the platform's loop (reports, NaN
refusal, checkpoints, resume) without Ray or torch on import."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from core.training import NonFiniteLossError
from trainables import _tune_api
from trainables.api import experiment_trainable

REPO = Path(__file__).resolve().parents[3]


def test_importing_the_api_imports_neither_torch_nor_ray():
    code = "import sys, trainables.api; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class Counter:
    """An experiment whose metric is a known function of the epoch and a
    trained parameter, so a wrong resume shows in the numbers."""

    def __init__(self, config: dict[str, Any], device: torch.device):
        self.weight = torch.tensor(float(config["start"]))
        self.poison_at = config.get("poison_at")

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.weight = self.weight * 0.5 + epoch
        return {"train_loss": float(self.weight)}

    def evaluate(self, epoch: int) -> dict[str, float]:
        value = math.nan if epoch == self.poison_at else float(self.weight) ** 2
        return {"val": value}

    def state_dict(self) -> dict[str, Any]:
        return {"weight": self.weight.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weight = state["weight"]


class FakeTune:
    """Stands in for Tune's session: collects reports, keeps the last checkpoint."""

    def __init__(self, checkpoint: dict[str, Any] | None = None):
        self.reports: list[dict[str, float]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.start = checkpoint

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_tune_api, "report", self.report)
        monkeypatch.setattr(_tune_api, "load_checkpoint", lambda: self.start)
        monkeypatch.setattr(_tune_api, "trial_device", lambda: torch.device("cpu"))

    def report(self, metrics: dict[str, float], *, state: dict[str, Any] | None = None) -> None:
        self.reports.append(dict(metrics))
        if state is not None:
            self.checkpoints.append(state)


CONFIG = {"start": 3.0, "max_epochs": 6, "checkpoint_every": 2, "cpus_per_trial": 1}


def test_every_epoch_is_reported_and_checkpointed_every_n(monkeypatch):
    tune = FakeTune()
    tune.install(monkeypatch)
    train = experiment_trainable(Counter)
    assert train.__name__ == "train_Counter"
    train(dict(CONFIG))
    assert [r["epoch"] for r in tune.reports] == [1, 2, 3, 4, 5, 6]
    assert [c["epoch"] for c in tune.checkpoints] == [2, 4, 6]


def test_a_resumed_trial_continues_exactly_where_its_checkpoint_stopped(monkeypatch):
    whole = FakeTune()
    whole.install(monkeypatch)
    experiment_trainable(Counter)(dict(CONFIG))
    resumed = FakeTune(checkpoint=whole.checkpoints[1])   # epoch 4
    resumed.install(monkeypatch)
    experiment_trainable(Counter)(dict(CONFIG))
    assert resumed.reports == whole.reports[4:]


def test_a_nan_metric_fails_the_trial(monkeypatch):
    tune = FakeTune()
    tune.install(monkeypatch)
    with pytest.raises(NonFiniteLossError, match="val=nan at epoch 3"):
        experiment_trainable(Counter)({**CONFIG, "poison_at": 2})
    assert [r["epoch"] for r in tune.reports] == [1, 2]
