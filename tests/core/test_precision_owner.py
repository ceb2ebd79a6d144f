"""One precision knob: ``resources.precision`` alone decides autocast, for every
registered family, on every device. No family config carries a switch of its
own (the three ``amp: True`` fields autocast to bfloat16 on a GPU whatever the
study asked), so with fp32 no model forward runs under autocast.

Checked on the CPU: the trial runs through ``trainables._loop.run_trial`` as
under Tune, with a forward hook on every layer of the family's model reading autocast's state
for both device types and a spy on every ``torch.autocast`` built on the way;
the CUDA decision is checked on ``precision_context`` itself, which builds the
only autocast of a trial."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from core.config import ConfigError
from core.experiments.registry import FamilyDef, family_names, get_family
from trainables import _loop
from trainables._loop import PLATFORM_KEYS, precision_context

FAMILIES = family_names()

_ARRAYS: dict[str, dict[str, np.ndarray]] = {}


def _arrays(family: FamilyDef) -> dict[str, np.ndarray]:
    """The family's synthetic set at its tiny config, plus its shared arrays, once per session."""
    if family.name not in _ARRAYS:
        config = family.config(family.tiny)
        arrays = family.data.generate(**{kw: getattr(config, f) for kw, f in family.data.params.items()})
        if family.shared is not None:
            arrays = {**arrays, **family.shared(config, arrays)}
        _ARRAYS[family.name] = arrays
    return _ARRAYS[family.name]


class _AutocastSpy:
    """Every ``torch.autocast`` built while it is installed: (device_type, dtype, enabled)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built: list[tuple[str, Any, bool]] = []
        real = torch.autocast
        spy = self

        class Recording(real):  # type: ignore[misc, valid-type]
            def __init__(self, device_type: str, dtype: Any = None, enabled: bool = True, cache_enabled: Any = None) -> None:
                spy.built.append((device_type, dtype, enabled))
                super().__init__(device_type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

        monkeypatch.setattr(torch, "autocast", Recording)

    def enabled(self) -> list[tuple[str, Any, bool]]:
        return [b for b in self.built if b[2]]


def _trial(monkeypatch: pytest.MonkeyPatch, name: str, precision: str) -> tuple[list[tuple[bool, bool]], _AutocastSpy]:
    """One tiny trial of family ``name`` at ``precision`` through ``run_trial``;
    autocast's (cpu, cuda) state at every forward of a layer of the family's model."""
    family = get_family(name)
    arrays = _arrays(family)
    monkeypatch.setattr(_loop._tune_api, "report", lambda metrics, state=None: None)
    monkeypatch.setattr(_loop._tune_api, "load_checkpoint", lambda: None)
    monkeypatch.setattr(_loop._tune_api, "trial_device", lambda: torch.device("cpu"))
    seen: list[tuple[bool, bool]] = []

    def make(config: dict[str, Any], device: torch.device) -> Any:
        experiment = family.build(config, arrays, device, ignore=PLATFORM_KEYS)
        for module in experiment.model.modules():   # every layer: cvae_video calls its model's methods, not forward
            module.register_forward_pre_hook(
                lambda module, args: seen.append((torch.is_autocast_enabled("cpu"), torch.is_autocast_enabled("cuda"))))
        return experiment

    spy = _AutocastSpy(monkeypatch)
    config = {**family.tiny, "max_epochs": 1, "checkpoint_every": 1, "cpus_per_trial": 1, "precision": precision}
    _loop.run_trial(config, make)
    assert seen, f"{name}: the model's forward never ran"
    return seen, spy


@pytest.mark.parametrize("name", FAMILIES)
def test_no_family_config_has_a_precision_switch_of_its_own(name: str) -> None:
    fields = {f.name for f in dataclasses.fields(get_family(name).config_cls)}
    assert not fields & {"amp", "precision", "autocast", "bf16", "mixed_precision"}


@pytest.mark.parametrize("name", FAMILIES)
def test_a_family_config_given_amp_is_refused(name: str) -> None:
    family = get_family(name)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['amp'\]"):
        family.config({**family.tiny, "amp": True})


@pytest.mark.parametrize("name", FAMILIES)
def test_fp32_runs_every_forward_without_autocast(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    seen, spy = _trial(monkeypatch, name, "fp32")
    assert set(seen) == {(False, False)}
    assert spy.enabled() == []      # nothing in the family (nor the loop) turned autocast on, for any device type


@pytest.mark.parametrize("name", FAMILIES)
def test_bf16_runs_every_forward_under_autocast(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    seen, spy = _trial(monkeypatch, name, "bf16")
    assert (True, False) in seen and not any(cuda for _, cuda in seen)   # (har_lstm's LSTM turns it off for itself)
    assert spy.enabled() == [("cpu", torch.bfloat16, True)]   # the loop's one autocast, around all the epochs


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("precision, enabled", [("fp32", False), ("bf16", True)])
def test_precision_context_decides_by_precision_alone(monkeypatch: pytest.MonkeyPatch, device: str, precision: str,
                                                      enabled: bool) -> None:
    """The same decision on a GPU as on a CPU (building a CUDA autocast needs no GPU;
    where there is none torch warns and turns it off, after the spy saw the request)."""
    spy = _AutocastSpy(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        precision_context(precision, torch.device(device))
    assert spy.built == [(device, torch.bfloat16, enabled)]
