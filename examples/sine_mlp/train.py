"""Example of a user's own trainable, outside the bundled families: an MLP
fitting a noisy sine. Copy this folder as the template for your own study.

Run it with ``python studies/run.py examples/sine_mlp/sine_mlp.yaml``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from trainables.api import load_checkpoint, report_epoch, trial_device

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


def train_sine(config: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    device = trial_device()
    torch.manual_seed(int(config["seed"]))
    xt, yt, xv, yv = (t.to(device) for t in _data(int(config.get("data_seed", 0))))
    model = _model(int(config["width"]), int(config["depth"]), str(config["activation"])).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(config["lr"]))
    start = 0
    state = load_checkpoint()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
    for epoch in range(start, int(config["max_epochs"])):
        model.train()
        g = torch.Generator().manual_seed(int(config["seed"]) * 1000 + epoch)
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 32):
            idx = perm[i : i + 32]
            loss = nn.functional.mse_loss(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = float(nn.functional.mse_loss(model(xv), yv))
        if not math.isfinite(val):
            raise FloatingPointError(f"non-finite val_mse at epoch {epoch + 1}")
        done = epoch + 1
        save = done % int(config.get("checkpoint_every", 1)) == 0 or done == int(config["max_epochs"])
        report_epoch({"val_mse": val, "train_loss": float(loss)}, epoch=done,
                     state={"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": done} if save else None)
