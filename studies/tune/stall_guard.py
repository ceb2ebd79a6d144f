"""A trial that stops reporting is ended, not waited for forever.

A trainable stuck in a dead data loader, a deadlocked collective or an endless
loop holds its worker, and the study with it, for good. A trial that has not
reported for ``budget.report_timeout_s`` seconds (0, the default: 20 times
the longest gap between two results seen so far in the study, and at least
10 minutes) has its actor killed, which Tune treats as a failed worker: the
trial is retried from its checkpoint up to ``budget.max_failures`` times, then
marked failed. The reason goes to ``<trial>/stalled.txt``, which the tables
show as the trial's error.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from studies._compat import kill_trial_actor, trial_folder
from studies.runs.trials import STALLED_FILE

AUTO_FACTOR, AUTO_FLOOR_S = 20.0, 600.0


class StallGuard(Callback):
    def __init__(self, timeout_s: float = 0.0) -> None:
        self.timeout_s = timeout_s
        self._since: dict[str, float] = {}   # trial id -> when it started or last reported
        self._longest = 0.0
        self._checked = 0.0

    def limit_s(self) -> float | None:
        if self.timeout_s > 0:
            return self.timeout_s
        return max(AUTO_FLOOR_S, AUTO_FACTOR * self._longest) if self._longest > 0 else None

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
        now = time.monotonic()
        if trial.trial_id in self._since:
            self._longest = max(self._longest, now - self._since[trial.trial_id])
        self._since[trial.trial_id] = now

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._since.pop(trial.trial_id, None)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """A worker failed and Tune retries the trial (perhaps after waiting for
        resources): timed afresh once it runs, and the failure's gap is no epoch's."""
        self._since.pop(trial.trial_id, None)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._since[trial.trial_id] = time.monotonic()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._since.pop(trial.trial_id, None)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        limit = self.limit_s()
        if now - self._checked < 1.0:
            return
        if limit is None:   # nothing timed yet: start the clocks of the running trials
            for trial in trials:
                if trial.status == "RUNNING":
                    self._since.setdefault(trial.trial_id, now)
            return
        self._checked = now
        for trial in trials:
            if trial.status != "RUNNING":
                continue
            since = self._since.setdefault(trial.trial_id, now)   # started, recovered or restored: timed from now
            if now - since <= limit:
                continue
            folder = trial_folder(trial)
            if folder is not None:   # the trial's folder may not have reached the run folder yet
                try:
                    Path(folder).mkdir(parents=True, exist_ok=True)
                    Path(folder, STALLED_FILE).write_text(
                        f"StalledTrial: no result for {now - since:.0f} s (limit {limit:.0f} s, budget.report_timeout_s); "
                        "its worker was killed\n")
                except OSError:   # the reason is lost, the study is not
                    pass
            self._since.pop(trial.trial_id, None)
            kill_trial_actor(trial)

    def __getstate__(self) -> dict[str, Any]:
        return {"timeout_s": self.timeout_s, "_since": {}, "_longest": 0.0, "_checked": 0.0}
