"""The declared search space as the report sees it: each factor's type, range,
scale and ``when`` conditions, and uniform samples of that space.

The modelled tables and the importance scores integrate over the space the
study *declared*, not over the region the searcher happened to visit: TPE
over-samples its favourite region, and an average over its trials is local.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from studies.spec.param import Param


def sample_space(factors: list[Param], n: int, rng: np.random.Generator,
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
