"""Typed family configs built from the plain dicts Ray Tune passes around."""

from __future__ import annotations

import dataclasses
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
