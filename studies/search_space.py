"""Declarative search spaces (YAML) -> Optuna distributions and a define-by-run hook.

Format, one entry per parameter::

    lr:           {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    n_layers:     {type: int, low: 1, high: 4}
    dropout:      {type: float, low: 0.0, high: 0.3, step: 0.05}
    ramp_shape:   {type: categorical, choices: [constant, step, linear]}
    ramp_start:   {type: float, low: 0.0, high: 0.6, when: {ramp_shape: [step, linear]}}

``when`` makes a parameter conditional: it is only sampled when every named
(earlier) parameter takes one of the listed values; otherwise the trial uses
the study's fixed config. Conditional spaces go through Optuna's define-by-run
API, as Hydra's Optuna sweeper and Ray's ``OptunaSearch`` expect.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna

from studies.errors import UserError
from studies.param import PARAM_TYPES, Param
from studies.yaml_io import read_yaml_mapping

_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when"},
    "int": {"type", "low", "high", "log", "step", "when"},
    "categorical": {"type", "choices", "when"},
}


def _number(source: str, key: str, value: Any, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{source}: {key}: expected a finite number, found {value!r}")
    if integer and float(value) != int(value):
        raise UserError(f"{source}: {key}: expected an integer, found {value!r}")
    return value


def _parse_param(source: str, name: str, raw: Any, earlier: dict[str, Param]) -> Param:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: {name}: expected a mapping like {{type: float, low: 0.0, high: 1.0}}, found {raw!r}")
    kind = raw.get("type")
    if kind not in PARAM_TYPES:
        raise UserError(f"{source}: {name}.type: expected one of {list(PARAM_TYPES)}, found {kind!r}")
    unknown = sorted(set(raw) - _KEYS[kind])
    if unknown:
        raise UserError(f"{source}: {name}.{unknown[0]}: unknown key for a {kind} parameter (allowed: {sorted(_KEYS[kind])})")
    if "when" in raw and not isinstance(raw["when"], dict):
        raise UserError(f"{source}: {name}.when: expected a mapping like {{other_param: [value, ...]}}, found {raw['when']!r}")
    when = {}
    for dep, allowed in (raw.get("when") or {}).items():
        if dep not in earlier:
            raise UserError(f"{source}: {name}.when.{dep}: must name a parameter defined above {name} (known: {sorted(earlier)})")
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        dep_param = earlier[dep]
        if dep_param.type == "categorical":
            bad = [a for a in allowed if a not in dep_param.choices]
            if bad:
                raise UserError(f"{source}: {name}.when.{dep}: {bad[0]!r} is not one of {dep}'s choices {list(dep_param.choices)}")
        when[dep] = allowed
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{source}: {name}.choices: expected a non-empty list, found {choices!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise UserError(f"{source}: {name}.choices: has duplicates: {choices}")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise UserError(f"{source}: {name}.choices: {c!r} is not a scalar (use numbers, strings or booleans)")
        return Param(name, kind, choices=tuple(choices), when=when)
    integer = kind == "int"
    for key in ("low", "high"):
        if key not in raw:
            raise UserError(f"{source}: {name}.{key}: missing (a {kind} parameter needs low and high)")
    low = _number(source, f"{name}.low", raw["low"], integer=integer)
    high = _number(source, f"{name}.high", raw["high"], integer=integer)
    if not low < high:
        raise UserError(f"{source}: {name}: expected low < high, found low={low}, high={high}")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise UserError(f"{source}: {name}.log: expected true or false, found {log!r}")
    if log and low <= 0:
        raise UserError(f"{source}: {name}.low: a log-scaled range needs low > 0, found {low}")
    step = raw.get("step")
    if step is not None:
        step = _number(source, f"{name}.step", step, integer=integer)
        if step <= 0 or step > high - low:
            raise UserError(f"{source}: {name}.step: expected 0 < step <= high - low, found {step}")
        if log:
            raise UserError(f"{source}: {name}: `step` and `log: true` cannot be combined (Optuna forbids it)")
    if integer:
        low, high = int(low), int(high)
        step = int(step) if step is not None else None
    else:
        low, high = float(low), float(high)
        step = float(step) if step is not None else None
    return Param(name, kind, low=low, high=high, log=log, step=step, when=when)


def parse_search_space(raw: dict[str, Any], source: str) -> list[Param]:
    if not raw:
        raise UserError(f"{source}: the search space is empty, expected at least one parameter")
    params: dict[str, Param] = {}
    for name, entry in raw.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise UserError(f"{source}: {name!r}: parameter names must be identifiers (letters, digits, _)")
        params[name] = _parse_param(source, name, entry, params)
    return list(params.values())


def load_search_space(path: Path) -> list[Param]:
    return parse_search_space(read_yaml_mapping(path), str(path))


class DefineByRun:
    """Optuna define-by-run hook: only samples, in file order, skipping inactive
    parameters (Ray's OptunaSearch captures what was suggested). A class, not a
    closure, because Tune pickles the searcher into the run folder."""

    def __init__(self, params: list[Param]):
        self.params = list(params)

    def __call__(self, trial: optuna.Trial) -> None:
        values: dict[str, Any] = {}
        for p in self.params:
            if not p.active(values):
                continue
            if p.type == "float":
                assert p.low is not None and p.high is not None   # the parser gives every numeric one a range
                values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)
            elif p.type == "int":
                assert p.low is not None and p.high is not None   # the parser gives every numeric one a range
                values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
            else:
                values[p.name] = trial.suggest_categorical(p.name, list(p.choices))


def define_by_run(params: list[Param]) -> DefineByRun:
    return DefineByRun(params)
