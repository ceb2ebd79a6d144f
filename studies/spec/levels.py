"""A factor's levels as the report and the start design name them: a choice,
an integer, or a bin of the declared range (numpy only)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from studies.spec.param import Param


def level_name(value: Any) -> str:
    """One spelling for a level, used for trial values, choices and baselines
    alike (1.0, 1 and "1" all read as "1"; 1024.0 stays "1024")."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)


def nice_edges(edges: list[float]) -> list[float]:
    """Round bin edges to the fewest significant digits (2..6) that keep them
    distinct, so a narrow range (0.990..0.999) still gets its bins."""
    for digits in range(2, 7):
        rounded = [float(f"{e:.{digits}g}") for e in edges]
        if len(set(rounded)) == len(set(edges)):
            return rounded
    return list(edges)


def outward(value: float, rounded: float, *, down: bool) -> float:
    """A data extreme as an outer bin edge, rounded away from the data at the
    precision of ``rounded`` (so the edge still holds the value)."""
    if (rounded <= value) if down else (rounded >= value):
        return rounded
    if value == 0:
        return 0.0
    scale = 10.0 ** (math.floor(math.log10(abs(value))) - 1)
    return (math.floor if down else math.ceil)(value / scale) * scale


def declared_edges(info: Param, bins: list[float] | None = None, n_bins: int = 4) -> list[float]:
    """The spec's bin edges, else ``n_bins`` equal-width bins of the declared
    range on the factor's own scale (log for log factors), edges rounded."""
    if bins:
        return [float(b) for b in bins]
    assert info.low is not None and info.high is not None   # without bins, only for declared factors
    lo, hi = info.to_unit(np.array([info.low, info.high], dtype=float))
    inner = info.from_unit(np.linspace(lo, hi, n_bins + 1)[1:-1]) if info.type != "int" else \
        np.exp(np.linspace(lo, hi, n_bins + 1)[1:-1]) if info.log else np.linspace(lo, hi, n_bins + 1)[1:-1]
    edges = [float(info.low), *nice_edges([float(e) for e in inner]), float(info.high)]
    return sorted(set(edges))


def bin_labels(edges: list[float], log: bool = False) -> list[str]:
    """``[lo, hi)`` labels, the last bin closed, every edge of a factor written
    with the same precision (decimals on a linear scale, significant digits on
    a log scale), so that 0.5 and 0.125 do not look like different kinds of number."""
    def fmt(values: list[float]) -> list[str]:
        for digits in range(1, 8):
            if log:
                out = [f"{v:.{digits}g}" for v in values]
            else:
                out = [f"{v:.{digits - 1}f}" for v in values]
            if len(set(out)) == len(set(values)) and all(float(o) == float(f"{v:.6g}") or digits == 7 for o, v in zip(out, values)):
                return out
        return [level_name(v) for v in values]
    names = fmt(edges)
    return [f"[{lo}, {hi}{']' if i == len(edges) - 2 else ')'}" for i, (lo, hi) in enumerate(zip(names[:-1], names[1:]))]


def declared_levels(f: Param, bins: list[float] | None) -> list[tuple[str, dict[str, Any]]]:
    """(label, how to draw it) per level: a choice, or a bin of the declared range."""
    if f.type == "categorical":
        return [(level_name(c), {"fixed": c}) for c in f.choices]
    if f.type == "int":
        assert f.low is not None and f.high is not None   # levels are only built for declared factors
        if (f.high - f.low) <= 5 and not bins:
            return [(level_name(int(v)), {"fixed": float(v)}) for v in range(int(f.low), int(f.high) + 1)]
    edges = declared_edges(f, bins)
    return [(label, {"within": (lo, hi)}) for label, lo, hi in zip(bin_labels(edges, f.log), edges[:-1], edges[1:])]
