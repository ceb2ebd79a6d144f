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
from studies.spec.param import Param
from studies.spec.schema import CategoricalEntry, NumericEntry, parse_entry
from studies.spec.yaml_io import read_yaml_mapping


def _parse_param(source: str, name: str, raw: Any, earlier: dict[str, Param]) -> Param:
    entry = parse_entry(raw, source=source, name=name)
    when = {}
    for dep, allowed in entry.when.items():
        if dep not in earlier:
            raise UserError(f"{source}: {name}.when.{dep}: must name a parameter defined above {name} (known: {sorted(earlier)})")
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        dep_param = earlier[dep]
        if dep_param.type == "categorical":
            bad = [a for a in allowed if a not in dep_param.choices]
            if bad:
                raise UserError(f"{source}: {name}.when.{dep}: {bad[0]!r} is not one of {dep}'s choices {list(dep_param.choices)}")
        when[dep] = allowed
    if isinstance(entry, CategoricalEntry):
        choices = entry.choices
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise UserError(f"{source}: {name}.choices: {c!r} is not a scalar (use numbers, strings or booleans)")
            if isinstance(c, float) and not math.isfinite(c):
                raise UserError(f"{source}: {name}.choices: {c!r} is not a finite number")
        if len(set(choices)) != len(choices):   # 1, 1.0 and True are one value to Python (and to Optuna)
            raise UserError(f"{source}: {name}.choices: has duplicates (equal values): {choices}")
        return Param(name, entry.type, choices=tuple(choices), when=when)
    return _numeric_param(source, name, entry, when)


def _numeric_param(source: str, name: str, entry: NumericEntry, when: dict[str, tuple[Any, ...]]) -> Param:
    """A float / int entry's cross-key rules (the schema has checked each key alone)."""
    integer = entry.type == "int"
    for key in ("low", "high", "step"):
        value = getattr(entry, key)
        if integer and value is not None and not float(value).is_integer():
            raise UserError(f"{source}: {name}.{key}: expected an integer, found {value!r}")
    low, high, step = entry.low, entry.high, entry.step
    if not low < high:
        raise UserError(f"{source}: {name}: expected low < high, found low={low}, high={high}")
    if entry.log and low <= 0:
        raise UserError(f"{source}: {name}.low: a log-scaled range needs low > 0, found {low}")
    if step is not None:
        if step <= 0 or step > high - low:
            raise UserError(f"{source}: {name}.step: expected 0 < step <= high - low, found {step}")
        if entry.log:
            raise UserError(f"{source}: {name}: `step` and `log: true` cannot be combined (Optuna forbids it)")
    if integer:
        return Param(name, "int", low=int(low), high=int(high), log=entry.log,
                     step=int(step) if step is not None else None, when=when)
    return Param(name, "float", low=float(low), high=float(high), log=entry.log, step=step, when=when)


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

    def __call__(self, trial: optuna.Trial | optuna.trial.FixedTrial) -> None:
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
