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

import itertools
import math
from pathlib import Path
from typing import Any

import optuna

from studies.errors import UserError
from studies.spec.param import Param
from studies.spec.schema import CategoricalEntry, NumericEntry, parse_entry
from studies.spec.yaml_io import read_yaml_mapping

# The most choices a categorical parameter may have. Each choice is a row of every ablation table (observed,
# modelled, designed, leave-one-out sweep) and a level the screening design balances and the report fits and
# tests; past a few dozen the tables are unreadable and most choices get too few trials for a mean, while the
# report's cost grows steeply with the levels (issue 33: 301 choices made a 1.6 GiB report in 94 s, 10,001 one
# past 17 GiB; a synthetic run of 4 trials per choice on 2 cores: 8 choices 6 s, 16 choices 80 s, 64 choices
# over 400 s). A larger set of choices is better searched as an int or float range, which the report bins.
MAX_CATEGORICAL_CHOICES = 32

# How many partial assignments _can_be_active may try before it gives up and lets the space through
# (a space that large is checked again when the report reads its trials).
_ACTIVE_SEARCH_STEPS = 100_000


def _can_take(p: Param, value: Any) -> bool:
    """Whether the numeric parameter ``p`` can take ``value`` (in its range, an integer for int, on its step grid)."""
    assert p.low is not None and p.high is not None   # the parser gives every numeric one a range
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if not p.low <= value <= p.high or (p.type == "int" and not float(value).is_integer()):
        return False
    if p.step is not None:
        k = (value - p.low) / p.step
        return abs(k - round(k)) < 1e-8
    return True


def _domain(p: Param) -> str:
    kind = "an integer" if p.type == "int" else "a number"
    grid = f" on the grid {p.low:g} + k * {p.step:g}" if p.step is not None else ""
    return f"{kind} in [{p.low:g}, {p.high:g}]{grid}"


class _Other:
    """A value of a parameter that no condition names (never equal to a listed one)."""

    def __repr__(self) -> str:
        return "<another value>"


_INACTIVE = _Other()   # the "value" of a parameter its own condition leaves out


def _candidates(p: Param, named: set[Any]) -> list[Any]:
    """The values of ``p`` that can decide a condition: the named ones it can take, and one other if it has more."""
    if p.type == "categorical":
        values = [c for c in p.choices if c in named]
        return values + ([_Other()] if len(values) < len(p.choices) else [])
    values = [v for v in named if _can_take(p, v)]
    assert p.low is not None and p.high is not None   # the parser gives every numeric one a range
    if p.type == "int" or p.step is not None:
        count = math.floor((p.high - p.low) / (p.step or 1) + 1e-9) + 1
        return values + ([_Other()] if len(set(values)) < count else [])
    return values + [_Other()]


def _can_be_active(conditions: dict[str, tuple[Any, ...]], earlier: dict[str, Param]) -> bool | None:
    """Whether some trial meets every condition (``name: allowed values``), each earlier parameter
    active or not by its own ``when`` as the sampler decides it (Param.active: an inactive one has no
    value). None: too many combinations to try."""
    relevant: set[str] = set()
    todo = list(conditions)
    while todo:
        dep = todo.pop()
        if dep not in relevant:
            relevant.add(dep)
            todo.extend(earlier[dep].when)
    order = [p for p in earlier.values() if p.name in relevant]
    named: dict[str, set[Any]] = {p.name: set() for p in order}
    for conds in [conditions, *(p.when for p in order)]:
        for dep, allowed in conds.items():
            named[dep].update(allowed)   # scalars the parameter can take: _parse_param has checked them
    steps = 0

    def search(i: int, values: dict[str, Any]) -> bool | None:
        nonlocal steps
        steps += 1
        if steps > _ACTIVE_SEARCH_STEPS:
            return None
        if i == len(order):
            return True
        p = order[i]
        options = _candidates(p, named[p.name]) if p.active(values) else [_INACTIVE]
        unknown = False
        for v in options:
            if p.name in conditions and (None if v is _INACTIVE else v) not in conditions[p.name]:
                continue   # as Param.active reads it: an inactive parameter has no value (None)
            found = search(i + 1, values if v is _INACTIVE else {**values, p.name: v})
            if found:
                return True
            unknown = unknown or found is None
        return None if unknown else False

    return search(0, {})


def _check_can_be_active(source: str, name: str, when: dict[str, tuple[Any, ...]], earlier: dict[str, Param]) -> None:
    """Refuse a ``when`` that no trial can meet: it names values that its parameters never take together
    (one active only when another has a value this condition excludes, say)."""
    if _can_be_active(when, earlier) is not False:
        return
    deps = list(when)
    for size in range(1, len(deps) + 1):   # the fewest conditions that already never hold together
        clash = next((c for c in itertools.combinations(deps, size)
                      if _can_be_active({d: when[d] for d in c}, earlier) is False), None)
        if clash is not None:
            break
    else:
        clash = tuple(deps)
    what = " and ".join(f"{d} in {list(when[d])}" for d in clash)
    chain: list[str] = []   # why: the conditions of those parameters, and of the ones they name, in file order
    todo = list(clash)
    while todo:
        d = todo.pop(0)
        if earlier[d].when and d not in chain:
            chain.append(d)
            todo.extend(earlier[d].when)
    why = "; ".join(f"{d} is active only when " + " and ".join(f"{k} is in {list(v)}" for k, v in earlier[d].when.items())
                    for d in sorted(chain, key=list(earlier).index))
    raise UserError(f"{source}: {name}.when: {what} never hold in the same trial{f' ({why})' if why else ''}, "
                    f"so {name} can never be active")


def _parse_param(source: str, name: str, raw: Any, earlier: dict[str, Param]) -> Param:
    entry = parse_entry(raw, source=source, name=name)
    when = {}
    for dep, allowed in entry.when.items():
        if dep not in earlier:
            raise UserError(f"{source}: {name}.when.{dep}: must name a parameter defined above {name} (known: {sorted(earlier)})")
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        dep_param = earlier[dep]
        if not allowed:
            raise UserError(f"{source}: {name}.when.{dep}: is empty, so {name} can never be active; list at least one "
                            f"value of {dep}")
        if dep_param.type == "categorical":
            bad = [a for a in allowed if a not in dep_param.choices]
            if bad:
                raise UserError(f"{source}: {name}.when.{dep}: {bad[0]!r} is not one of {dep}'s choices {list(dep_param.choices)}")
        else:
            bad = [a for a in allowed if not _can_take(dep_param, a)]
            if bad:
                then = f", so {name} can never be active" if len(bad) == len(allowed) else f"; list only values {dep} can take"
                raise UserError(f"{source}: {name}.when.{dep}: {bad[0]!r} is not a value {dep} can take "
                                f"({_domain(dep_param)}){then}")
        when[dep] = allowed
    if when:
        _check_can_be_active(source, name, when, earlier)
    if isinstance(entry, CategoricalEntry):
        choices = entry.choices
        if len(choices) > MAX_CATEGORICAL_CHOICES:
            raise UserError(f"{source}: {name}.choices: has {len(choices)} choices, expected at most "
                            f"{MAX_CATEGORICAL_CHOICES} (a categorical factor is a row per choice in every ablation "
                            "table and needs trials at each choice; bin it as an int or float range, or split the study)")
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
