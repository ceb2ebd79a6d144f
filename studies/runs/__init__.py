"""Every byte of a run on disk: the run folder and its JSON records, the trials
reader, ``optuna.db`` storage and rebuild, the designed stage's plan, signing,
buckets, free space. Ray-free (``tests/test_layout.py``)."""

from studies.runs.remote_storage import RemoteStore, is_uri
from studies.runs.run_folder import RUN_FILE, Invocation, RunFolder, RunInfo, driver_lock, in_use
from studies.runs.storage import DEFAULT_CACHE_DIR, resolve_storage
from studies.runs.trials import RunTrials, TuneTrial, load_trials, read_tune_trials

__all__ = ["DEFAULT_CACHE_DIR", "RUN_FILE", "Invocation", "RemoteStore", "RunFolder", "RunInfo", "RunTrials", "TuneTrial",
           "driver_lock", "in_use", "is_uri", "load_trials", "read_tune_trials", "resolve_storage"]
