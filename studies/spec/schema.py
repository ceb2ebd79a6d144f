"""The declared shapes of a spec's sections and of a search-space entry
(pydantic), and the one formatter that turns a validation error into the CLI's
one line: ``file: key: what was expected, found what``.

Types are strict (``"20"`` is not 20, ``true`` is not 1) except that a whole
float is an int (``--set budget.max_epochs=1e2``). Unknown keys are refused.
What a type cannot say (a range that depends on another key, a reference to
another parameter) is checked after the schema, in spec.py and search_space.py.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError

from studies.errors import UserError


def _whole_float_to_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


Int = Annotated[int, Strict(), BeforeValidator(_whole_float_to_int)]
Float = Annotated[float, Strict()]
Finite = Annotated[float, Strict(), AfterValidator(_finite)]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]

# The config of every section dataclass (Budget, Resources, ... in spec.py).
SECTION = ConfigDict(extra="forbid")


def validate_section(cls: type, raw: Any, *, source: str, where: str) -> Any:
    """``raw`` (a mapping, or None for the defaults) as the pydantic dataclass ``cls``."""
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise UserError(f"{source}: {where}: expected a mapping, found {raw!r}")
    try:
        return TypeAdapter(cls).validate_python(raw)
    except ValidationError as exc:
        raise UserError(f"{source}: {where}: {_section_problem(cls, exc)}") from None


def _section_problem(cls: type, exc: ValidationError) -> str:
    """In the words of a family config error: ``unknown key(s) ['foo'] for Budget
    (known: [...])`` or ``\\`max_epochs\\` is 'many' (str), expected int like 20``."""
    errors = exc.errors()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] in ("unexpected_keyword_argument", "extra_forbidden"))
    if unknown:
        return f"unknown key(s) {unknown} for {cls.__name__} (known: {sorted(fields)})"
    e = errors[0]
    name = str(e["loc"][0]) if e["loc"] else "?"
    field = fields.get(name)
    default: Any = None
    if field is not None:
        factory = field.default_factory
        default = field.default if field.default is not dataclasses.MISSING else (
            None if factory is dataclasses.MISSING else factory())
    value = e["input"]
    expected = type(default).__name__ if default is not None else "a value"
    return f"`{name}` is {value!r} ({type(value).__name__}), expected {expected} like {default!r}"


# ---------------------------------------------------------------- search-space entries

class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    when: dict[Any, Any] = Field(default_factory=dict)


class NumericEntry(_Entry):
    type: Literal["float", "int"]
    low: Finite
    high: Finite
    log: Bool = False
    step: Finite | None = None


class FloatEntry(NumericEntry):
    type: Literal["float"]


class IntEntry(NumericEntry):
    type: Literal["int"]


class CategoricalEntry(_Entry):
    type: Literal["categorical"]
    choices: Annotated[list[Any], Field(min_length=1)]


PARAM_ENTRY = TypeAdapter(Annotated[FloatEntry | IntEntry | CategoricalEntry, Field(discriminator="type")])
_ENTRY_CLASSES: dict[str, type[_Entry]] = {"float": FloatEntry, "int": IntEntry, "categorical": CategoricalEntry}
_ENTRY_EXPECTS = {
    "low": "expected a finite number", "high": "expected a finite number", "step": "expected a finite number",
    "log": "expected true or false", "choices": "expected a non-empty list",
    "when": "expected a mapping like {other_param: [value, ...]}",
}


def parse_entry(raw: Any, *, source: str, name: str) -> FloatEntry | IntEntry | CategoricalEntry:
    """One search-space entry, by its ``type``."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: {name}: expected a mapping like {{type: float, low: 0.0, high: 1.0}}, found {raw!r}")
    try:
        return PARAM_ENTRY.validate_python(raw)
    except ValidationError as exc:
        raise UserError(f"{source}: {_entry_problem(exc, raw, name)}") from None


def _entry_problem(exc: ValidationError, raw: dict[str, Any], name: str) -> str:
    errors = exc.errors()
    kind = raw.get("type")
    if errors[0]["type"] in ("union_tag_invalid", "union_tag_not_found") or kind not in _ENTRY_CLASSES:
        return f"{name}.type: expected one of {list(_ENTRY_CLASSES)}, found {kind!r}"
    allowed = sorted(_ENTRY_CLASSES[kind].model_fields)
    for e in errors:   # an unknown key first: it usually explains the rest
        if e["type"] == "extra_forbidden":
            return f"{name}.{e['loc'][-1]}: unknown key for a {kind} parameter (allowed: {allowed})"
    e = errors[0]
    key = str(e["loc"][1]) if len(e["loc"]) > 1 else "?"
    if e["type"] == "missing":
        need = "choices" if kind == "categorical" else "low and high"
        return f"{name}.{key}: missing (a {kind} parameter needs {need})"
    return f"{name}.{key}: {_ENTRY_EXPECTS.get(key, 'invalid')}, found {raw.get(key)!r}"
