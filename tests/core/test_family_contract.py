"""What every registered family must do, run for each one from its FamilyDef alone.

A new family gets these tests by its line in core/experiments/registry.py
(the pattern of Optuna's shared sampler tests): its data, one epoch, the
checkpoint round trip, resume equal to an uninterrupted run, determinism, and
input files in other float types and byte orders.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import math
from typing import Any

import numpy as np
import pytest
import torch

from core.config import ConfigError
from core.data.hdf5 import validate_arrays
from core.experiments.registry import FAMILY_MODULES, FamilyDef, family_names, get_family
from core.training import run_epochs
from studies.spec.study import load_spec, resolve_study_path
from trainables._loop import PLATFORM_KEYS

FAMILIES = family_names()


def tiny(family: FamilyDef, **changes: Any) -> dict[str, Any]:
    return {**family.tiny, **changes}


_ARRAYS: dict[str, dict[str, np.ndarray]] = {}


def arrays_of(family: FamilyDef) -> dict[str, np.ndarray]:
    """The family's synthetic set at its tiny config, generated once per test session."""
    if family.name not in _ARRAYS:
        config = family.config(tiny(family))
        _ARRAYS[family.name] = family.data.generate(**{kw: getattr(config, f) for kw, f in family.data.params.items()})
    return _ARRAYS[family.name]


def build(family: FamilyDef, values: dict[str, Any], arrays: dict[str, np.ndarray], **kwargs: Any) -> Any:
    """``family.build``, with the family's shared arrays (``FamilyDef.shared``) added
    to the data first, as the driver does once per study."""
    if family.shared is not None:
        arrays = {**arrays, **family.shared(family.config(values, ignore=PLATFORM_KEYS), arrays)}
    return family.build(values, arrays, **kwargs)


def metrics_after(family: FamilyDef, arrays: dict[str, np.ndarray], epochs: int, **changes: Any) -> list[dict[str, float]]:
    experiment = build(family, tiny(family, **changes), arrays)
    return run_epochs(experiment, max_epochs=epochs)


def _round_trip(state: dict[str, Any]) -> dict[str, Any]:
    """Through bytes, as a Tune checkpoint is: torch.save, then a weights-only load."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_the_registry_names_every_family_once():
    assert len(set(FAMILY_MODULES.values())) == len(FAMILY_MODULES)
    for name in FAMILIES:
        assert get_family(name).name == name


@pytest.mark.parametrize("name", FAMILIES)
def test_data_fields_are_config_fields_and_generator_keywords(name):
    family = get_family(name)
    fields = {f.name for f in dataclasses.fields(family.config_cls)}
    assert family.data_fields <= fields
    keywords = inspect.signature(family.data.generate).parameters
    assert set(family.data.params) <= set(keywords)
    fixed = {k for k, p in keywords.items() if k not in family.data.params}
    assert all(keywords[k].default is not inspect.Parameter.empty for k in fixed), "a keyword no config field sets needs a default"


@pytest.mark.parametrize("name", FAMILIES)
def test_generated_data_passes_its_own_schema_and_checks(name):
    family = get_family(name)
    arrays = arrays_of(family)
    validate_arrays(arrays, family.data.schema, "generated")
    family.data.check(arrays, "generated")


@pytest.mark.parametrize("name", FAMILIES)
def test_the_cache_is_keyed_by_every_data_field(name, tmp_path):
    family = get_family(name)
    config = family.config(tiny(family))
    first = family.load_data(config, data_path=None, cache_dir=tmp_path)
    assert set(first) <= set(family.data.schema)
    assert len(list(tmp_path.glob("*.h5"))) == 1
    family.load_data(config, data_path=None, cache_dir=tmp_path)          # from the cache: no new file
    assert len(list(tmp_path.glob("*.h5"))) == 1
    other = dataclasses.replace(config, data_seed=config.data_seed + 1)
    family.load_data(other, data_path=None, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.h5"))) == 2


@pytest.mark.parametrize("name", FAMILIES)
def test_one_epoch_reports_the_study_metric_as_finite_numbers(name):
    family = get_family(name)
    (metrics,) = metrics_after(family, arrays_of(family), 1)
    assert metrics["epoch"] == 1
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in metrics.values()), metrics
    study = load_spec(resolve_study_path(family.study))
    assert study.family == name
    assert study.metric in metrics


@pytest.mark.parametrize("name", FAMILIES)
def test_the_family_declares_every_metric_an_epoch_reports(name):
    """``FamilyDef.metrics`` is what a spec's metric is checked against at load
    (studies/spec/study.py): a name an epoch reports but the family does not declare
    would refuse a valid spec. Two epochs: a family may report some names only later."""
    family = get_family(name)
    assert family.metrics is not None, f"{name}: a bundled family declares its metrics (FamilyDef.metrics)"
    assert family.metrics.__name__ != "<lambda>", f"{name}: metrics= is a module-level function, not a lambda"
    declared = list(family.metrics(family.config(tiny(family))))
    assert len(set(declared)) == len(declared), f"{name}: a metric declared twice"
    reported = set().union(*metrics_after(family, arrays_of(family), 2))
    assert reported - set(declared) == set(), f"{name}: reported but not declared"
    assert "epoch" in declared


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_same_numbers_other_seed_other_numbers(name):
    family = get_family(name)
    arrays = arrays_of(family)
    a = metrics_after(family, arrays, 1)
    assert metrics_after(family, arrays, 1) == a
    assert metrics_after(family, arrays, 1, seed=1) != a


@pytest.mark.parametrize("name", FAMILIES)
def test_checkpoint_round_trip_restores_the_evaluation(name):
    family = get_family(name)
    arrays = arrays_of(family)
    trained = build(family, tiny(family), arrays)
    run_epochs(trained, max_epochs=1)
    state = _round_trip(trained.state_dict())
    assert {"model", "optimizer", "model_args", "config"} <= set(state)
    assert state["config"] == dataclasses.asdict(trained.config)
    fresh = build(family, tiny(family), arrays)
    # the next epoch's evaluation: a family with nothing to train (mdn_sampling) keeps
    # running means, which differ from a fresh run's only once a second epoch is measured
    assert fresh.evaluate(1) != trained.evaluate(1)
    fresh.load_state_dict(state)
    assert fresh.evaluate(1) == trained.evaluate(1)


@pytest.mark.parametrize("name", FAMILIES)
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(name):
    family = get_family(name)
    arrays = arrays_of(family)
    uninterrupted = metrics_after(family, arrays, 2)
    first = build(family, tiny(family), arrays)
    run_epochs(first, max_epochs=1)
    state = _round_trip(first.state_dict())
    torch.manual_seed(12345)   # a new process starts from other global random state
    resumed = build(family, tiny(family), arrays)
    resumed.load_state_dict(state)
    assert run_epochs(resumed, max_epochs=2, start_epoch=1) == uninterrupted[1:]


def _with_float_dtype(arrays: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    return {k: a.astype(dtype) if a.dtype.kind == "f" else a for k, a in arrays.items()}


@pytest.mark.parametrize("name", FAMILIES)
def test_float64_and_big_endian_inputs_train_like_float32(name):
    family = get_family(name)
    arrays = arrays_of(family)
    assert {a.dtype for a in arrays.values() if a.dtype.kind == "f"} == {np.dtype("float32")}
    expected = metrics_after(family, arrays, 1)
    assert metrics_after(family, _with_float_dtype(arrays, "float64"), 1) == expected   # exact: float32 values
    big_endian = {k: a.astype(a.dtype.newbyteorder(">")) for k, a in arrays.items()}
    assert metrics_after(family, big_endian, 1) == expected


@pytest.mark.parametrize("name", FAMILIES)
def test_float16_inputs_train(name):
    family = get_family(name)
    (metrics,) = metrics_after(family, _with_float_dtype(arrays_of(family), "float16"), 1)
    assert all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("name", FAMILIES)
def test_read_only_shared_arrays_are_never_written(name):
    family = get_family(name)
    arrays = {k: a.copy() for k, a in arrays_of(family).items()}
    for a in arrays.values():
        a.flags.writeable = False   # as arrays from Ray's object store are
    before = {k: a.copy() for k, a in arrays.items()}
    metrics_after(family, arrays, 1)
    for k, a in arrays.items():
        np.testing.assert_array_equal(a, before[k])


@pytest.mark.parametrize("name", FAMILIES)
def test_build_ignores_only_the_platform_keys(name):
    family = get_family(name)
    arrays = arrays_of(family)
    platform = {"checkpoint_every": 2, "cpus_per_trial": 1, "confirm_label": "top1", "precision": "fp32", "trial_seed": 7}
    assert set(platform) == PLATFORM_KEYS
    build(family, {**tiny(family), **platform}, arrays, ignore=PLATFORM_KEYS)
    with pytest.raises(ConfigError, match="unknown key"):
        build(family, {**tiny(family), **platform}, arrays)


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_trains_under_bf16_autocast(name):
    """resources.precision: bf16 wraps the epochs in torch.autocast; every family's
    ops must take it (LSTMs over packed sequences, convolutions, the losses)."""
    from trainables._loop import precision_context

    family = get_family(name)
    with precision_context("bf16", torch.device("cpu")):
        history = metrics_after(family, arrays_of(family), 2)
    assert len(history) == 2 and all(math.isfinite(v) for m in history for v in m.values())


@pytest.mark.parametrize("name", FAMILIES)
def test_every_numeric_config_field_declares_its_range(name):
    """A family config's BOUNDS name every int and float field (core.config.Bound), so a
    bad value from a spec, --set, --fix or a searched parameter fails when the config
    is built, in one line (tests/core/test_config_bounds.py tries each bound)."""
    family = get_family(name)
    numeric = {f.name for f in dataclasses.fields(family.config_cls)
               if isinstance(f.default, (int, float)) and not isinstance(f.default, bool)}
    bounds = getattr(family.config_cls, "BOUNDS", {})
    assert numeric - set(bounds) == set(), f"{name}: fields without a declared range"
    assert set(bounds) <= numeric, f"{name}: BOUNDS names a field that is not a number"
    study = load_spec(resolve_study_path(family.study))   # the bundled study's edges are inside every bound
    for p in study.params:
        if p.name in bounds and p.numeric:
            assert bounds[p.name].admits(p.low) and bounds[p.name].admits(p.high), p.name
