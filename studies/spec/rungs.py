"""ASHA's rungs, computed once, exactly as Ray Tune computes them.

Ray's ``_Bracket`` (ray/tune/schedulers/async_hyperband.py, Ray 2.60) lays out
bracket ``s``'s milestones as ``min_t * rf ** (k + s)`` for ``k`` in
``range(int(np.log(max_t / min_t) / np.log(rf) - s + 1))``: floats, float
rounding included. A trial is judged at a rung (and recorded there) by its first
result whose time is ``>= milestone``; the time here is the integer epoch, so
the decision falls at ``ceil(milestone)``, compared exactly as Ray compares it
(a milestone of ``5 * 2.2 == 11.000000000000002`` is decided at epoch 12, not
11). A result at ``max_t`` stops the trial and is still recorded at a rung it
reaches (``on_trial_complete``), so a milestone in ``(max_t - 1, max_t]`` is
decided at ``max_t``; a milestone past ``max_t`` never is.

``Rungs`` is the one place these epochs come from: the progress lines
(studies.tune.progress), the report (studies.report) and MO-ASHA
(studies.tune.mo_asha) all read it; tests/studies/spec/test_rungs.py checks it
against Ray's own scheduler. No Ray here (tests/test_layout.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Rungs"]


@dataclass(frozen=True)
class Rungs:
    """ASHA's rungs for ``grace_period`` (Ray's ``min_t``), ``reduction_factor``
    (``rf``) and ``max_epochs`` (``max_t``), one bracket (``s = 0``, what the
    studies run)."""

    grace_period: int
    reduction_factor: float
    max_epochs: int

    @classmethod
    def of_budget(cls, budget: Any) -> Rungs:
        """The rungs of a spec's ``budget`` section (``studies.spec.study.Budget``)."""
        return cls(budget.grace_period, budget.reduction_factor, budget.max_epochs)

    def bracket_milestones(self, s: int = 0) -> list[float]:
        """Ray's milestones of bracket ``s``, ascending (Ray keeps them descending),
        by Ray's own expression, so the same floats for the same arguments."""
        min_t, max_t, rf = self.grace_period, self.max_epochs, self.reduction_factor
        max_rungs = int(np.log(max_t / min_t) / np.log(rf) - s + 1)
        return [min_t * rf ** (k + s) for k in range(max_rungs)]

    @property
    def milestones(self) -> list[float]:
        """Ray's float milestones (bracket 0), ascending."""
        return self.bracket_milestones(0)

    @property
    def epochs(self) -> list[int]:
        """The integer epochs at which ASHA judges a trial at a rung, ascending,
        each ``<= max_epochs``: the first epoch at or past each milestone."""
        return sorted({e for e in (math.ceil(m) for m in self.milestones) if e <= self.max_epochs})

    @property
    def stopping_epochs(self) -> list[int]:
        """The decision epochs below ``max_epochs``: where ASHA may stop a trial
        early (at ``max_epochs`` every trial stops anyway)."""
        return [e for e in self.epochs if e < self.max_epochs]

    @property
    def report_epochs(self) -> list[int]:
        """The epochs a report tabulates: every decision epoch and the full budget."""
        return sorted({*self.epochs, self.max_epochs})
