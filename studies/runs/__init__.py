"""Every byte of a run on disk: the run folder and its JSON records, the trials
reader, ``optuna.db`` storage and rebuild, the designed stage's plan, signing,
buckets, free space. Ray-free (``tests/test_layout.py``).

The surface is loaded on first use: the trials reader's pandas is not for
``--list`` and ``--runs``."""

from __future__ import annotations

import importlib
from typing import Any

_SURFACE = {
    "RUN_FILE": "studies.runs.run_folder", "Invocation": "studies.runs.run_folder", "RunFolder": "studies.runs.run_folder",
    "RunInfo": "studies.runs.run_folder", "driver_lock": "studies.runs.run_folder", "in_use": "studies.runs.run_folder",
    "RemoteStore": "studies.runs.remote_storage", "is_uri": "studies.runs.remote_storage",
    "DEFAULT_CACHE_DIR": "studies.runs.storage", "resolve_storage": "studies.runs.storage",
    "RunTrials": "studies.runs.trials", "TuneTrial": "studies.runs.trials", "load_trials": "studies.runs.trials",
    "read_tune_trials": "studies.runs.trials",
}
__all__ = sorted(_SURFACE)


def __getattr__(name: str) -> Any:
    if name not in _SURFACE:
        raise AttributeError(f"module 'studies.runs' has no attribute {name!r}")
    return getattr(importlib.import_module(_SURFACE[name]), name)
