"""Tune callbacks that look after the run folder while a study runs: its
signatures (studies/runs/run_signing.py), its free space (studies/runs/free_space.py)
and, for a run in a bucket, the driver's own files put there (studies/runs/remote_storage.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from studies._compat import experiment_dirs, remote_run
from studies.runs.free_space import low_space
from studies.runs.remote_storage import stage_own_files
from studies.runs.run_signing import sign_run_folder, signing_key
from studies.runs.snapshot_copy import keep_copy
from studies.signals import stop_tune_cleanly


class _RunFolderCallback(Callback):
    """Finds the run folder from the trials (a path given when the run started
    would be stale after the folder moved). Tune pickles callbacks into
    tuner.pkl: nothing of the session is kept across that."""

    def __init__(self) -> None:
        self._dirs: tuple[str, str, bool] | None = None
        self._remote: tuple[Any, str, Path] | None = None
        self._trials: list[Any] = []

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._trials = trials   # Tune's own list: the first step's snapshot already has trials the step added

    def _local_run_dir(self) -> Path | None:
        """The run folder on this machine: itself, or its mirror for a run in a bucket."""
        if self._dirs is None and self._trials:
            self._dirs = experiment_dirs(self._trials[0])
            remote = remote_run(self._trials[0])
            self._remote = remote
        if self._dirs is None:
            return None
        return Path(self._dirs[1]) if self._dirs[2] else (self._remote[2] if self._remote else None)

    def __getstate__(self) -> dict[str, Any]:
        return {"_dirs": None, "_remote": None, "_trials": []}


class RunSigner(_RunFolderCallback):
    """Tune asks callbacks for their state inside each snapshot, after it has
    written the experiment state and the searcher's to its staging folder and
    before it copies them to the run folder: the moment to record their digests
    in the run folder, and to keep a whole copy of the snapshot (state files and
    each trial's driver files) there (studies.runs.snapshot_copy). Holds neither
    the key nor its path."""

    def get_state(self) -> dict[str, Any] | None:
        run_dir = self._local_run_dir()
        if run_dir is not None and self._dirs is not None:
            key = signing_key()
            sign_run_folder(run_dir, key, sources=Path(self._dirs[0]))
            if self._dirs[2]:   # a local run folder: a resume puts this snapshot back if a kill cuts its copy
                keep_copy(run_dir, Path(self._dirs[0]), key)
        return None   # nothing of its own to save


class FreeSpaceGuard(_RunFolderCallback):
    """Stops the study as Ctrl+C would (a clean stop with a whole snapshot) when
    the run folder's disk runs low; checked at most once a second."""

    def __init__(self) -> None:
        super().__init__()
        self._checked = 0.0

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        run_dir = self._local_run_dir()
        if run_dir is None or time.monotonic() - self._checked < 1.0:
            return
        self._checked = time.monotonic()
        if low_space(run_dir) is not None:
            stop_tune_cleanly()   # Tune's handler: stop, snapshot, return (once)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_checked": 0.0}


class BucketPush(_RunFolderCallback):
    """For a run in a bucket: at each snapshot (after RunSigner, listed before
    it), the driver's own files of the mirror (run.json, optuna.db, the
    signatures, ...) are copied into Tune's staging folder, which Tune then
    uploads with that snapshot, so a run read or resumed from the bucket
    alone finds them as of the snapshot they belong to."""

    def get_state(self) -> dict[str, Any] | None:
        run_dir = self._local_run_dir()
        if run_dir is not None and self._remote is not None and self._dirs is not None:
            stage_own_files(run_dir, Path(self._dirs[0]))
        return None


class BucketGuard(_RunFolderCallback):
    """For a run in a bucket: stops the study as Ctrl+C would once the bucket stops
    answering (checked at most every 2 s, and at once when a trial fails). Left
    running, every trial fails writing into it, each with a traceback, and the
    experiment ends by raising. The driver says why (studies.driver)."""

    def __init__(self) -> None:
        super().__init__()
        self._checked = 0.0
        self._fired = False

    def _check(self) -> None:
        self._local_run_dir()   # finds the bucket from the trials
        if self._fired or self._remote is None:
            return
        self._checked = time.monotonic()
        fs, path, _ = self._remote
        try:
            fs.get_file_info(path)
        except OSError:
            self._fired = True
            stop_tune_cleanly()   # Tune's handler: stop, snapshot (which may fail), return (once)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if time.monotonic() - self._checked >= 2.0:
            self._check()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._trials = self._trials or trials
        self._check()

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_checked": 0.0, "_fired": False}
