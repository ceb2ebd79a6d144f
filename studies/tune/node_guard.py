"""A study whose Ray lost every node stops, instead of waiting forever.

When the raylet of the only node dies (killed, OOM-killed, crashed), Tune
keeps polling for resources that never come back ("Cluster resources cannot be
detected or are 0") and the driver hangs with run.json saying "running". With
no live node with CPUs for ``GRACE_S`` seconds, the study stops as on Ctrl+C
(a clean stop with a snapshot), and the driver ends with one line and exit
code 75; ``--resume`` starts a fresh Ray and goes on. Nodes lost from a bigger
cluster are Tune's to handle (their trials are retried elsewhere).
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from studies.signals import stop_tune_cleanly

GRACE_S = 10.0


def live_cpus() -> float:
    """CPUs of the cluster's live nodes (0 when the cluster cannot be asked)."""
    import ray

    try:
        return float(sum(n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")))
    except Exception:   # the GCS is gone too
        return 0.0


class NodeGuard(Callback):
    def __init__(self) -> None:
        self._lost_since: float | None = None
        self._checked = 0.0
        self._fired = False

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        if self._fired or now - self._checked < 2.0:
            return
        self._checked = now
        if live_cpus() > 0:
            self._lost_since = None
            return
        self._lost_since = self._lost_since or now
        if now - self._lost_since >= GRACE_S:
            self._fired = True
            stop_tune_cleanly()   # Tune's handler: stop, snapshot, return (once)

    def __getstate__(self) -> dict[str, Any]:
        return {"_lost_since": None, "_checked": 0.0, "_fired": False}
