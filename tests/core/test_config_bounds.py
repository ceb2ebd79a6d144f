"""Family configs refuse out-of-range numbers when they are built (core.config.Bound, check_bounds):
a learning rate <= 0, a batch size, epoch count or hidden size < 1, dropout outside [0, 1), ...
with one line naming the field and the range. Run for every registered family from its BOUNDS."""

from __future__ import annotations

import dataclasses
import math

import pytest

from core.config import DROPOUT, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, Bound, ConfigError
from core.experiments.registry import family_names, get_family

FAMILIES = family_names()


def test_bound_admits_and_says_what_it_expects():
    assert POSITIVE.admits(1e-9) and not POSITIVE.admits(0.0) and not POSITIVE.admits(-1)
    assert NON_NEGATIVE.admits(0) and not NON_NEGATIVE.admits(-1e-12)
    assert DROPOUT.admits(0.0) and DROPOUT.admits(0.99) and not DROPOUT.admits(1.0)
    assert not OPEN_FRACTION.admits(0.0) and not OPEN_FRACTION.admits(1.0) and OPEN_FRACTION.admits(0.5)
    for bound in (POSITIVE, NON_NEGATIVE, DROPOUT, Bound(), Bound(high=3)):
        assert not bound.admits(math.nan) and not bound.admits(math.inf) and not bound.admits(-math.inf)
    assert POSITIVE.expected("lr") == "> 0" and Bound(2).expected("n") == ">= 2"
    assert DROPOUT.expected("dropout") == "0 <= dropout < 1"
    assert OPEN_FRACTION.expected("val_fraction") == "0 < val_fraction < 1"
    assert Bound(2, 100).expected("clip_length") == "2 <= clip_length <= 100"
    assert Bound(high=3, high_open=True).expected("x") == "< 3"


def _outside(bound: Bound, integer: bool) -> list[float]:
    """Values just outside ``bound`` on each bounded side (0 and a negative one for a positive field)."""
    step = 1 if integer else 0.5
    out: list[float] = []
    if bound.low is not None:
        edge = bound.low if bound.low_open else bound.low - step
        out += [edge, edge - 1, -1] if edge > -1 else [edge]
    if bound.high is not None:
        out.append(bound.high if bound.high_open else bound.high + step)
    return [int(v) if integer else float(v) for v in dict.fromkeys(out) if not bound.admits(v)]


def _cases() -> list[tuple[str, str, float]]:
    cases = []
    for name in FAMILIES:
        family = get_family(name)
        defaults = family.defaults()
        for field, bound in family.config_cls.BOUNDS.items():
            integer = isinstance(defaults[field], int)
            cases += [(name, field, value) for value in _outside(bound, integer)]
    return cases


@pytest.mark.parametrize("name, field, value", _cases())
def test_every_bounded_field_refuses_a_value_outside_its_range(name, field, value):
    family = get_family(name)
    bound = family.config_cls.BOUNDS[field]
    with pytest.raises(ConfigError) as info:
        family.config({**family.tiny, field: value})
    assert str(info.value) == f"`{field}` is {value}, expected {bound.expected(field)}"


@pytest.mark.parametrize("name", FAMILIES)
def test_a_learning_rate_must_be_positive(name):
    """Every family with a learning rate (``lr``, ``pretrain_lr``) refuses 0 and a negative one."""
    family = get_family(name)
    rates = [f.name for f in dataclasses.fields(family.config_cls) if f.name == "lr" or f.name.endswith("_lr")]
    assert rates, f"{name} has no learning rate field"
    for field in rates:
        for value in (-1.0, -1e-3, 0.0):
            with pytest.raises(ConfigError) as info:
                family.config({**family.tiny, field: value})
            assert str(info.value) == f"`{field}` is {value}, expected > 0"


@pytest.mark.parametrize("name", FAMILIES)
def test_the_usual_positive_fields_have_the_usual_bounds(name):
    """What every family shares: batch sizes, epochs and sizes >= 1, dropout in [0, 1), rates > 0, seeds >= 0."""
    family = get_family(name)
    bounds = family.config_cls.BOUNDS
    for field, bound in bounds.items():
        if field == "lr" or field.endswith("_lr"):
            assert bound == POSITIVE, field
        elif field.endswith(("batch_size", "epochs")) and field != "fast_train_epochs":
            assert bound.low is not None and bound.low >= 1 and not bound.low_open, field
        elif field in ("hidden", "hidden_size", "d_model", "n_layers", "num_layers", "n_heads", "dim_feedforward",
                       "attention_dim", "width", "channels", "z_channels", "n_components"):
            assert bound.low is not None and bound.low >= 1, field
        elif field == "dropout":
            assert bound == DROPOUT, field
        elif field.endswith("seed") or field in ("weight_decay", "grad_clip"):
            assert bound == NON_NEGATIVE, field
        elif field == "val_fraction":
            assert bound == OPEN_FRACTION, field


@pytest.mark.parametrize("name", FAMILIES)
def test_a_float_field_refuses_nan_and_infinity(name):
    family = get_family(name)
    defaults = family.defaults()
    floats = [f for f in family.config_cls.BOUNDS if isinstance(defaults[f], float)]
    for field in floats:
        for value in (math.nan, math.inf):
            with pytest.raises(ConfigError, match=rf"^`{field}` is {value}, expected .* \(a finite number\)$"):
                family.config({**family.tiny, field: value})


@pytest.mark.parametrize("name", FAMILIES)
def test_defaults_and_the_tiny_config_are_inside_every_bound(name):
    family = get_family(name)
    for values in ({}, family.tiny):
        config = family.config(values)
        for field, bound in family.config_cls.BOUNDS.items():
            assert bound.admits(getattr(config, field)), (field, getattr(config, field))
