"""A search-space parameter: one type for the sampler, the spec, the tables and the importance."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PARAM_TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One search-space parameter, as the sampler, the spec checks, the tables
    and the importance all see it. ``when`` makes it conditional: it is active
    only when every named earlier parameter takes one of the listed values."""

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

    def probe_values(self) -> list[Any]:
        """Values that exercise the edges, for checking against a family's config."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]

    def distribution(self) -> Any:
        """The Optuna distribution (``optuna.distributions.BaseDistribution``)."""
        import optuna

        if self.type == "float":
            assert self.low is not None and self.high is not None   # the parser gives every numeric one a range
            return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            assert self.low is not None and self.high is not None   # the parser gives every numeric one a range
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return optuna.distributions.CategoricalDistribution(self.choices)

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
