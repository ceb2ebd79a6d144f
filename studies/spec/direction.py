"""Which way is better for a study's metric: one value object instead of a
``mode == "min"`` branch at every comparison (Ray-free)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Direction:
    mode: str  # "min" or "max", as the spec says

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {self.mode!r}")

    @property
    def minimise(self) -> bool:
        return self.mode == "min"

    @property
    def ascending(self) -> bool:
        """Sort order that puts the best first."""
        return self.minimise

    @property
    def word(self) -> str:
        """``lower`` or ``higher`` (is better)."""
        return "lower" if self.minimise else "higher"

    @property
    def optuna(self) -> Literal["minimize", "maximize"]:
        return "minimize" if self.minimise else "maximize"

    def better(self, a: float, b: float) -> bool:
        """Is ``a`` strictly better than ``b``?"""
        return a < b if self.minimise else a > b

    def improves(self, change: float) -> bool:
        """Is a change (new minus old) an improvement?"""
        return change < 0 if self.minimise else change > 0

    def best(self, values: Iterable[float]) -> float:
        """The best finite value, NaN when there is none."""
        finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        if not finite:
            return math.nan
        return min(finite) if self.minimise else max(finite)

    def idxbest(self, series: Any) -> Any:
        """The index label of a pandas Series' best value."""
        return series.idxmin() if self.minimise else series.idxmax()
