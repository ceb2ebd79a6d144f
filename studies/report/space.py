"""The declared search space as the report sees it: each factor's type, range,
scale and ``when`` conditions, and uniform samples of that space.

The modelled tables and the importance scores integrate over the space the
study *declared*, not over the region the searcher happened to visit: TPE
over-samples its favourite region, and an average over its trials is local.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FactorInfo:
    """What the report needs to know about a search-space parameter."""

    name: str
    type: str                                  # float | int | categorical
    choices: tuple[Any, ...] = ()
    log: bool = False
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    low: float | None = None                   # declared range (numeric factors)
    high: float | None = None
    step: float | None = None

    @property
    def numeric(self) -> bool:
        return self.type in ("float", "int")

    @property
    def declared(self) -> bool:
        """Whether the declared domain is known (numeric: low and high; categorical: choices)."""
        return bool(self.choices) if self.type == "categorical" else (self.low is not None and self.high is not None)

    def active(self, values: dict[str, Any]) -> bool:
        return all(values.get(name) in allowed for name, allowed in self.when.items())

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Numeric values -> the scale the space is uniform on (log for log factors)."""
        x = np.asarray(x, dtype=float)
        return np.log(x) if self.log else x

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        x = np.exp(u) if self.log else np.asarray(u, dtype=float)
        if self.type == "int":
            x = np.clip(np.round(x), self.low, self.high)
        elif self.step:
            assert self.low is not None   # a step grid starts at the declared low
            x = np.clip(self.low + np.round((x - self.low) / self.step) * self.step, self.low, self.high)
        return x

    def sample(self, rng: np.random.Generator, n: int, lo: float | None = None, hi: float | None = None) -> np.ndarray:
        """``n`` values uniform on the declared scale, optionally within [lo, hi)."""
        if self.type == "categorical":
            return np.asarray(self.choices, dtype=object)[rng.integers(0, len(self.choices), n)]
        lo = self.low if lo is None else lo
        hi = self.high if hi is None else hi
        if self.type == "int":  # every integer in [lo, hi) equally likely (log: weighted by its log-width)
            assert lo is not None and hi is not None and self.high is not None   # only declared factors are sampled
            top = math.floor(hi) if hi >= self.high else math.ceil(hi) - 1  # the last bin holds `high`
            ints = np.arange(math.ceil(lo), top + 1)
            if self.log:
                w = np.log(ints + 0.5) - np.log(np.maximum(ints - 0.5, 0.5))
                return rng.choice(ints, size=n, p=w / w.sum()).astype(float)
            return rng.choice(ints, size=n).astype(float)
        u_lo, u_hi = self.to_unit(np.array([lo, hi]))
        return self.from_unit(rng.uniform(u_lo, u_hi, n))


def factor_infos(params: Iterable[Any], names: Iterable[str] | None = None) -> list[FactorInfo]:
    """``studies.search_space.Param``s (or anything with the same fields) -> FactorInfos."""
    keep = set(names) if names else None
    return [FactorInfo(p.name, p.type, tuple(p.choices), p.log, dict(p.when), p.low, p.high, p.step)
            for p in params if keep is None or p.name in keep]


def sample_space(factors: list[FactorInfo], n: int, rng: np.random.Generator,
                 fixed: dict[str, Any] | None = None,
                 within: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """``n`` configs uniform over the declared space, in declaration order;
    a factor whose ``when`` condition fails is NaN (inactive), as in a trial.
    ``fixed`` pins factors to a value for every row, before their dependants
    are decided (so pinning a parent switches its children on or off);
    ``within`` draws a numeric factor uniformly inside [lo, hi) of its range."""
    fixed, within = fixed or {}, within or {}
    out: dict[str, np.ndarray] = {}
    for f in factors:
        if f.name in fixed:
            col = np.full(n, fixed[f.name], dtype=object if f.type == "categorical" else float)
        elif f.name in within:
            col = f.sample(rng, n, *within[f.name])
        else:
            col = f.sample(rng, n)
        mask = np.ones(n, dtype=bool)
        for dep, allowed in f.when.items():
            parent = out.get(dep)
            mask &= np.array([v in allowed for v in parent], dtype=bool) if parent is not None else False
        col = col.astype(object) if f.type == "categorical" else col.astype(float)
        col[~mask] = None if f.type == "categorical" else np.nan
        out[f.name] = col
    return pd.DataFrame(out)


def activating_values(f: FactorInfo, factors: list[FactorInfo]) -> dict[str, tuple[Any, ...]]:
    """For a conditional factor: the values its ancestors must take for it to be active."""
    by_name = {g.name: g for g in factors}
    out: dict[str, tuple[Any, ...]] = {}
    todo = [f]
    while todo:
        g = todo.pop()
        for dep, allowed in g.when.items():
            out[dep] = tuple(a for a in out.get(dep, allowed) if a in allowed)
            if dep in by_name:
                todo.append(by_name[dep])
    return out
