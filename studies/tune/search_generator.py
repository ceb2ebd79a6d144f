"""Tune's SearchGenerator, with its trial count taken from the trial states on resume.

Tune writes one snapshot as several files (``experiment_state-*.json`` with the
trials, then the searcher's pickle, then ``search_gen_state-*.json`` with the
count of trials made) and copies them to the run folder, or a bucket, one by one
in a background thread. A driver killed, or a disk that fills, between two of
those files leaves a count from another snapshot than the trial list: restored,
the generator then makes one trial too many (the count is older) or one too few
(the count is newer). The trial list is the one Tune resumes, so the count is
made to match it.

The generator's experiment (what each new trial is made from, storage
included) is unpickled from that file too, with the absolute location of the
folder that wrote it; a resume points it at the folder being resumed
(``resume_at``), as Tune itself points the restored trials.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune.search import ConcurrencyLimiter, SearchGenerator

from studies._compat import newest_experiment_state, repoint_experiment_storage


def snapshot_trials(dirpath: str | Path) -> dict[str, str] | None:
    """Each trial id of the newest experiment state in ``dirpath`` and its Tune
    status (None: no state there)."""
    newest = newest_experiment_state(dirpath)
    if newest is None:
        return None
    try:
        entries = json.loads(Path(newest).read_text())["trial_data"]
        trials = [json.loads(entry) for entry, _ in entries]
        return {str(t.get("trial_id", i)): str(t.get("status", "")) for i, t in enumerate(trials)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None   # Tune itself refuses a state it cannot read, before we get here


def trials_in_snapshot(dirpath: str | Path) -> int | None:
    """How many trials the newest experiment state in ``dirpath`` holds (None: no state there)."""
    trials = snapshot_trials(dirpath)
    return None if trials is None else len(trials)


class TrialCountedGenerator(SearchGenerator):
    def resume_at(self, experiment_path: str, filesystem: Any | None = None,
                  check_copy: Callable[[Path], None] | None = None) -> None:
        """Where the run being resumed is (Tuner.restore's path and file system): the
        experiment restored from the snapshot makes its new trials there. ``check_copy``
        (raises to refuse): called with Tune's private copy of the snapshot's files
        before anything in it is unpickled (the searcher's and the generator's state
        here, the callbacks' right after), so what is checked is what Tune reads."""
        self._resume_at = (experiment_path, filesystem)
        self._check_copy = check_copy

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_resume_at", None)   # this machine's path: never pickled into a snapshot
        state.pop("_check_copy", None)  # holds the user's signing key
        return state

    def restore_from_dir(self, dirpath: str) -> None:
        check_copy = getattr(self, "_check_copy", None)
        if check_copy is not None:
            check_copy(Path(dirpath))
        super().restore_from_dir(dirpath)
        resume_at = getattr(self, "_resume_at", None)
        if resume_at is not None and self._experiment is not None:
            repoint_experiment_storage(self._experiment, *resume_at)
        trials = snapshot_trials(dirpath)
        if trials is None:
            return
        self._counter = len(trials)
        if len(trials) < self._total_samples:
            self._finished = False   # a newer count's "no more trials" is not this list's
        limiter = self.searcher
        if isinstance(limiter, ConcurrencyLimiter):
            # Its live trials come from the generator's file too: one that ended in the trial
            # list would hold a slot for good (with max_concurrent 1, a study that never goes
            # on). Live are the trials the resume will run, and report, again.
            limiter.live_trials = {tid for tid, status in trials.items() if status != "TERMINATED"}
            limiter.num_unfinished_live_trials = len(limiter.live_trials)
