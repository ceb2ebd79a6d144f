"""ASHA's rungs kept across a resume.

Tune pickles the scheduler once, in ``tuner.pkl`` when the run starts, and
``Tuner.restore`` hands back that start-time scheduler (ray-project/ray#30838):
a resumed study would compare its next trials with empty rungs and stop
nothing it should. A callback's state is saved with every experiment snapshot,
next to the trial states it matches, and restored before the restored trials
are queued; carrying the rungs there makes the resumed study stop and promote
exactly as an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from studies._compat import asha_rungs, set_asha_rungs


class AshaRungs(Callback):
    """Saves ``scheduler``'s rungs with each snapshot and puts them back on
    restore. Tune pickles this callback and the scheduler together in
    ``tuner.pkl``, so after a restore it still holds the scheduler Tune uses."""

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler

    def get_state(self) -> dict[str, Any] | None:
        if hasattr(self._scheduler, "get_rungs"):   # ours (studies.tune.mo_asha) keeps its rungs as plain data itself
            return {"mo_asha_rungs": self._scheduler.get_rungs()}
        return {"asha_rungs": asha_rungs(self._scheduler)}

    def set_state(self, state: dict[str, Any]) -> None:
        if "mo_asha_rungs" in state:
            self._scheduler.set_rungs(state["mo_asha_rungs"])
        else:
            set_asha_rungs(self._scheduler, state["asha_rungs"])
