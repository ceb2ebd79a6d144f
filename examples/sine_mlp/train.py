"""Example of a user's own trainable, outside the bundled families: an MLP
fitting a noisy sine. Copy this folder as the template for your own study.

Run it with ``python studies/run.py examples/sine_mlp/sine_mlp.yaml``.

The experiment says what one epoch of training and one evaluation are; the
platform's loop (``experiment_trainable``) runs the epochs, reports them,
refuses NaN, checkpoints and resumes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainables.api import experiment_trainable

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _data(seed: int, n: int = 512) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 6 - 3                      # (n, 1) in [-3, 3]
    y = torch.sin(2 * x) + 0.1 * torch.randn(n, 1, generator=g)    # (n, 1)
    cut = int(0.8 * n)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def _model(width: int, depth: int, activation: str) -> nn.Module:
    layers: list[nn.Module] = []
    fan_in = 1
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), ACTIVATIONS[activation]()]
        fan_in = width
    return nn.Sequential(*layers, nn.Linear(fan_in, 1))


class SineExperiment:
    def __init__(self, config: dict[str, Any], device: torch.device):
        torch.set_num_threads(1)
        self.seed = int(config["seed"])
        torch.manual_seed(self.seed)
        self.xt, self.yt, self.xv, self.yv = (t.to(device) for t in _data(int(config.get("data_seed", 0))))
        self.model = _model(int(config["width"]), int(config["depth"]), str(config["activation"])).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=float(config["lr"]))

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        g = torch.Generator().manual_seed(self.seed * 1000 + epoch)   # same epoch, same batches, even after a resume
        perm = torch.randperm(len(self.xt), generator=g).to(self.xt.device)
        total, batches = 0.0, 0
        for i in range(0, len(perm), 32):
            idx = perm[i : i + 32]
            loss = nn.functional.mse_loss(self.model(self.xt[idx]), self.yt[idx])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total, batches = total + float(loss), batches + 1
        return {"train_loss": total / batches}

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float]:
        self.model.eval()
        return {"val_mse": float(nn.functional.mse_loss(self.model(self.xv), self.yv))}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


train_sine = experiment_trainable(SineExperiment)
