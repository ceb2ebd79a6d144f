"""Typed family configs built from the plain dicts Ray Tune passes around."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key is unknown or its value has the wrong type."""


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Match ``value`` to the type of the field's default (int -> float is fine)."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (tuple, list)):
        if isinstance(value, (tuple, list)):
            return type(default)(value)
    else:
        return value
    raise ConfigError(f"`{name}` is {value!r} ({type(value).__name__}), expected {type(default).__name__} like {default!r}")


def config_from_dict(cls: type[T], values: Mapping[str, Any], *, ignore: frozenset[str] = frozenset()) -> T:
    """Build dataclass ``cls`` from ``values``; unknown keys are an error."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields) - ignore)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} for {cls.__name__} (known: {sorted(fields)})")
    kwargs = {}
    for name, value in values.items():
        if name in ignore:
            continue
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        )
        kwargs[name] = _coerce(name, value, default)
    return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class Bound:
    """The range a numeric config field must lie in: ``low`` and ``high`` (None:
    unbounded on that side), each inclusive unless ``low_open`` / ``high_open``.
    A family config declares one per numeric field (``BOUNDS``) and checks them
    with :func:`check_bounds` when it is built, so a bad value from a spec's
    config, ``--set``, ``--fix`` or a searched parameter fails there, in one line."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        """Whether ``value`` is finite and inside the range (NaN never is)."""
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def expected(self, name: str) -> str:
        """``> 0``, ``>= 1``, ``0 <= dropout < 1``: what an error says is expected."""
        lo = None if self.low is None else f"{self.low:g} {'<' if self.low_open else '<='}"
        hi = None if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        if lo is not None and hi is not None:
            return f"{lo} {name} {hi}"
        if lo is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return hi or "a finite number"


POSITIVE = Bound(0, low_open=True)               # learning rates, scales, divisors
NON_NEGATIVE = Bound(0)                          # weights, penalties, noise, seeds; grad_clip (0: off)
AT_LEAST_ONE = Bound(1)                          # sizes, counts, epochs
DROPOUT = Bound(0, 1, high_open=True)            # a probability that leaves something: 0 <= p < 1
PROBABILITY = Bound(0, 1)                        # 0 <= p <= 1
OPEN_FRACTION = Bound(0, 1, low_open=True, high_open=True)   # val_fraction: both sides need an item


def check_bounds(config: Any, bounds: Mapping[str, Bound]) -> None:
    """Raise a one-line ConfigError for the first field outside its bound
    (```lr`` is -1.0, expected > 0`)."""
    for name, bound in bounds.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue   # a wrong type is _coerce's error, already raised for a dict-built config
        if not bound.admits(value):
            finite = "" if math.isfinite(value) else " (a finite number)"
            raise ConfigError(f"`{name}` is {value}, expected {bound.expected(name)}{finite}")
