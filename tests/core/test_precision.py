"""resources.precision: bf16 runs a trial's epochs under torch.autocast(bfloat16)
on its device; fp32 (the default) runs them as written. Checked on the CPU,
where autocast takes bfloat16 too; the CUDA path is the same call."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from trainables import _loop


class _Probe:
    """Records the dtype a linear layer computes in, per epoch."""

    def __init__(self) -> None:
        self.layer = torch.nn.Linear(4, 4)
        self.seen: list[torch.dtype] = []

    def train_epoch(self, epoch: int) -> dict[str, float]:
        out = self.layer(torch.ones(2, 4))
        self.seen.append(out.dtype)
        return {"loss": float(out.float().pow(2).mean())}

    def evaluate(self, epoch: int) -> dict[str, float]:
        return {"val": 1.0}

    def state_dict(self) -> dict[str, Any]:
        return {"w": self.layer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.layer.load_state_dict(state["w"])


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), (None, torch.float32)])
def test_the_epochs_compute_in_the_precision_asked(monkeypatch, precision: str | None, dtype: torch.dtype) -> None:
    reported: list[dict] = []
    monkeypatch.setattr(_loop._tune_api, "report", lambda metrics, state=None: reported.append(dict(metrics)))
    monkeypatch.setattr(_loop._tune_api, "load_checkpoint", lambda: None)
    monkeypatch.setattr(_loop._tune_api, "trial_device", lambda: torch.device("cpu"))
    probe = _Probe()
    config = {"max_epochs": 3, "checkpoint_every": 1, **({"precision": precision} if precision else {})}
    _loop.run_trial(config, lambda cfg, device: probe)
    assert probe.seen == [dtype] * 3 and [r["epoch"] for r in reported] == [1, 2, 3]
    assert probe.layer.weight.dtype == torch.float32   # autocast leaves the weights (and the checkpoint) in float32
    assert not torch.is_autocast_enabled("cpu")          # and ends with the trial


def test_the_spec_key_reaches_the_trial_config() -> None:
    from studies.spec.study import STUDIES_DIR, load_spec

    spec = load_spec(STUDIES_DIR / "mdn_ramp.yaml", smoke=True, overrides=["resources.precision=bf16"])
    assert spec.trial_config()["precision"] == "bf16"
