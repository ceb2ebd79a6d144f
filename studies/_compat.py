"""Every use of a private Ray Tune or Optuna API, in one place.

Each is something the public API does not offer (yet); tests/cluster/
test_compat.py exercises every function here against the installed versions,
so an upgrade that moves one fails there, by name, not somewhere in a study.
pyproject.toml pins Ray and Optuna to the minor versions CI tests.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna

# --- Ray Tune's OptunaSearch: the Optuna study and trials it holds -----------------------

def searcher_study(searcher: Any) -> optuna.Study:
    """The Optuna study an OptunaSearch asks and tells."""
    return searcher._ot_study


def searcher_trials(searcher: Any) -> dict[str, optuna.Trial]:
    """Tune trial id -> the Optuna trial OptunaSearch opened for it."""
    return searcher._ot_trials


def move_searcher_study(searcher: Any, study: optuna.Study) -> None:
    """Point an OptunaSearch, and the open Optuna trials it holds, at ``study``
    (the same study, in another storage)."""
    searcher._ot_study = study
    searcher._storage = study._storage
    for trial in searcher._ot_trials.values():
        trial.study = study
        trial.storage = study._storage


def study_storage_url(study: optuna.Study) -> str | None:
    """The URL of the storage an Optuna study lives in (through Optuna's cache wrapper)."""
    storage = study._storage
    return getattr(storage, "url", None) or getattr(getattr(storage, "_backend", None), "url", None)


def set_tpe_gamma(sampler: optuna.samplers.TPESampler, gamma: Callable[[int], int]) -> None:
    """TPE's split function (how many trials are "good"), set on a built sampler:
    Optuna 4.9 deprecated the constructor's ``gamma`` argument."""
    sampler._gamma = gamma


def searcher_completed(searcher: Any) -> set[str]:
    """Tune trial ids whose outcome OptunaSearch has already told Optuna."""
    return searcher._completed_trials


# --- Ray Tune's ResultGrid: the trials themselves -----------------------------------------

def grid_trials(grid: Any) -> list[Any]:
    """Every Tune Trial of a finished fit (status, config, last result), which
    ResultGrid's public Results do not carry."""
    return list(getattr(getattr(grid, "_experiment_analysis", None), "trials", None) or [])


# --- Ray Tune's ASHA: the rungs it has recorded ----------------------------------------------

def asha_rungs(scheduler: Any) -> list[list[tuple[float, dict[str, float]]]]:
    """Per bracket, each rung's milestone and the (sign-adjusted) metric it
    recorded per trial id: the whole of what ASHA decides by, as plain Python
    numbers (a trainable may report numpy scalars)."""
    return [[(float(milestone), {str(t): float(v) for t, v in recorded.items()}) for milestone, recorded in bracket._rungs]
            for bracket in scheduler._brackets]


def ray_bracket_milestones(min_t: int, max_t: int, reduction_factor: float, s: int = 0) -> list[float]:
    """The milestones Ray's own ``_Bracket`` lays out for these arguments, ascending
    (studies.spec.rungs computes the same without Ray; tests/studies/spec/test_rungs.py compares)."""
    from ray.tune.schedulers.async_hyperband import _Bracket

    return sorted(milestone for milestone, _ in _Bracket(min_t, max_t, reduction_factor, s)._rungs)


def set_asha_rungs(scheduler: Any, rungs: list[list[tuple[float, dict[str, float]]]]) -> None:
    """Put recorded rungs back (``asha_rungs``'s output) into a scheduler of the same shape."""
    shape = [[m for m, _ in bracket] for bracket in rungs]
    if shape != [[m for m, _ in bracket._rungs] for bracket in scheduler._brackets]:
        raise ValueError(f"ASHA rungs at {shape} do not fit this scheduler's")
    for bracket, saved in zip(scheduler._brackets, rungs):
        bracket._rungs = [(milestone, dict(recorded)) for milestone, recorded in saved]


# --- Ray Tune's storage: where a trial's experiment is staged and kept ----------------------

def newest_experiment_state(dirpath: str | Path) -> str | None:
    """The experiment-state file Tune's restore reads in ``dirpath`` (None: none there)."""
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint

    return _find_newest_experiment_checkpoint(str(dirpath))


def experiment_dirs(trial: Any) -> tuple[str, str, bool]:
    """(the driver's staging folder, the experiment folder on storage, whether
    that storage is the local filesystem) of a trial's experiment."""
    import pyarrow.fs

    storage = trial.storage
    local = isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem)
    return storage.experiment_driver_staging_path, storage.experiment_fs_path, local


def trial_folder(trial: Any) -> str | None:
    """The trial's folder in the run folder on this machine: on storage that is
    the local filesystem, its own; in a bucket, its place in the local mirror."""
    staging, experiment, local = experiment_dirs(trial)
    if local:
        return trial.storage.trial_fs_path
    mirror = run_mirror(trial)
    rel = trial.storage.trial_fs_path[len(experiment):].lstrip("/")
    return str(mirror / rel) if mirror is not None and rel else None


def run_mirror(trial: Any) -> Path | None:
    """The local mirror (studies.runs.remote_storage) of a trial's run folder in a bucket."""
    from studies.runs.remote_storage import mirror_of

    _, experiment, local = experiment_dirs(trial)
    return None if local else mirror_of(trial.storage.storage_filesystem.type_name, experiment)


def remote_run(trial: Any) -> tuple[Any, str, Path] | None:
    """(file system, run folder on it, local mirror) of a trial's run in a bucket; None on local storage."""
    mirror = run_mirror(trial)
    return None if mirror is None else (trial.storage.storage_filesystem, trial.storage.experiment_fs_path, mirror)


def tuner_search_alg(tuner: Any) -> Any | None:
    """The search algorithm a (restored) Tuner will fit with: the one unpickled from
    ``tuner.pkl`` (None in Ray Client mode, where the Tuner lives in another process)."""
    local = getattr(tuner, "_local_tuner", None)
    return None if local is None else local._tune_config.search_alg


def repoint_experiment_storage(experiment: Any, experiment_path: str, filesystem: Any | None) -> None:
    """Point a restored ``Experiment`` (the one a SearchGenerator makes new trials
    from, unpickled from ``search_gen_state-*.json`` with the storage of the
    machine and folder that wrote it) at the experiment folder being resumed.
    Done as TuneController._restore_trials does it for the restored trials (a copy
    of the storage with the file system, storage path and experiment name
    replaced, same session timestamp), which Tune does not do for the generator's
    experiment: without it, a copied run's new trials write into the original."""
    import copy
    import posixpath

    from ray.train._internal.storage import StorageContext, _FilesystemSyncer, get_fs_and_path

    fs, fs_path = get_fs_and_path(experiment_path, filesystem)
    parent, name = posixpath.split(Path(fs_path).as_posix().rstrip("/"))
    old: StorageContext = experiment.storage
    new = copy.copy(old)
    new.storage_filesystem, new.storage_fs_path, new.experiment_dir_name = fs, parent, name
    new.custom_fs_provided = filesystem is not None
    new.syncer = _FilesystemSyncer(storage_filesystem=fs, sync_period=old.sync_config.sync_period,
                                   sync_timeout=old.sync_config.sync_timeout)
    experiment.storage = new
    experiment.spec["storage"] = new   # the dict each new trial is made from holds it too


@contextmanager
def tune_pickles_checked(check: Callable[[str, bytes], None] | None,
                         wrote_tuner_pkl: Callable[[bytes], None]) -> Iterator[None]:
    """Tune reads ``tuner.pkl`` and the newest experiment state (Tuner.restore, and the
    resume at the start of fit) from the run folder and unpickles them at once. Here
    each is first handed to ``check`` (which raises to refuse) as the very bytes about
    to be unpickled: a check of the file beforehand would leave a window in which it
    could be swapped. ``check`` gets ``"tuner.pkl"`` or ``"experiment_state-*.json"``
    and the bytes; None: no check (a folder the user trusts). The bytes Tune pickles
    into ``tuner.pkl`` go to ``wrote_tuner_pkl`` (to be signed as written, never read
    back from the folder). Nothing else changes while this is active."""
    from ray.tune.analysis import experiment_analysis
    from ray.tune.execution import tune_controller
    from ray.tune.impl import tuner_internal

    # Tuner.restore reads the experiment state too (its ExperimentAnalysis), before fit does.
    state_readers = (tune_controller, experiment_analysis)
    real_pickle, real_loads_state = tuner_internal.pickle, tune_controller._loads_with_cloudpickle

    class _CheckedPickle:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_pickle, name)

        def loads(self, data: bytes, *args: Any, **kwargs: Any) -> Any:
            if check is not None:
                check("tuner.pkl", data)
            return real_pickle.loads(data, *args, **kwargs)

        def dumps(self, obj: Any, *args: Any, **kwargs: Any) -> bytes:
            data = real_pickle.dumps(obj, *args, **kwargs)
            wrote_tuner_pkl(data)
            return data

    def loads_state(data: Any) -> Any:
        if check is not None:
            check("experiment_state-*.json", data if isinstance(data, bytes) else str(data).encode())
        return real_loads_state(data)

    tuner_internal.pickle = _CheckedPickle()  # type: ignore[assignment]
    for module in state_readers:
        module._loads_with_cloudpickle = loads_state  # type: ignore[attr-defined]
    try:
        yield
    finally:
        tuner_internal.pickle = real_pickle
        for module in state_readers:
            module._loads_with_cloudpickle = real_loads_state  # type: ignore[attr-defined]


def kill_trial_actor(trial: Any) -> None:
    """Kill the worker running ``trial``; Tune sees a failed worker and retries
    the trial from its checkpoint (or fails it after ``max_failures``)."""
    import ray

    actor = trial.temporary_state.ray_actor
    if actor is not None:
        ray.kill(actor, no_restart=True)


# --- Ray: the cluster's GCS, and the worker output a driver prints ---------------------------

def connect_gcs(address: str) -> None:
    """Open (and drop) a client of the GCS at ``host:port``: a cluster with token
    authentication refuses one without the token at once (``AuthenticationError``)."""
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    GcsClient(address=address)


def filter_worker_output(keep: Callable[[list[str]], list[str]]) -> bool:
    """Pass each batch of worker output this driver prints (``log_to_driver``)
    through ``keep`` first. False when the driver prints no worker output."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    def filtered(handler: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        def handle(data: dict[str, Any]) -> None:
            lines = keep(list(data.get("lines") or []))
            if lines:
                handler({**data, "lines": lines})
        return handle

    with dispatcher._lock:
        found = any(name == "ray_print_logs" for name, _ in dispatcher.handlers)
        dispatcher.handlers = [(name, filtered(h) if name == "ray_print_logs" else h) for name, h in dispatcher.handlers]
    return found


# --- Optuna: writing to a trial that is no longer the sampler's --------------------------

def set_trial_user_attr(study: optuna.Study, trial: optuna.trial.FrozenTrial, key: str, value: Any) -> None:
    """A user attribute on a trial found by ``get_trials`` (a FrozenTrial has no setter)."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def set_trial_intermediate_value(study: optuna.Study, trial: optuna.trial.FrozenTrial, step: int, value: float) -> None:
    study._storage.set_trial_intermediate_value(trial._trial_id, step, value)


# --- Interruption: did Tune's stop-signal handler fire? ----------------------------------

def fit_interrupted(fit: Callable[[], Any]) -> tuple[Any, bool]:
    """Run ``fit`` (a ``Tuner.fit``); return its result and whether a stop
    signal (Ctrl+C, SIGINT, SIGUSR1) ended it. Tune installs its own SIGINT
    handler for the fit, and when a stop signal arrives that handler puts the
    previous SIGINT handler back; after a fit it was not stopped, Tune's
    handler stays. So "the handler from before is back" means it fired, read
    from public ``signal`` state. Where Tune does not install one
    (``TUNE_DISABLE_SIGINT_HANDLER=1``, or not the main thread), Ctrl+C raises
    KeyboardInterrupt instead, and this says False."""
    tune_catches = (threading.current_thread() is threading.main_thread()
                    and not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") or 0))
    before = signal.getsignal(signal.SIGINT)
    result = fit()
    return result, tune_catches and signal.getsignal(signal.SIGINT) is before


# --- Shutdown: a local Ray whose processes run with SIGTERM blocked ---------------------

def end_local_ray() -> None:
    """``ray.shutdown()``, with the processes of the local Ray this driver started
    (if any) ended at once by SIGKILL, in order: they run with SIGTERM blocked
    (studies.signals.sigterm_blocked_in_children), which turns Ray's own "SIGTERM,
    then SIGKILL a second later" into a second of waiting per process. The raylet's
    children go first (workers, and the agents that would otherwise try for a minute
    to tell a GCS that is gone about their raylet's death), then what Ray ends, in its
    order. A joined cluster (--address) has no processes here."""
    import ray
    from ray._private import worker

    node = worker._global_node
    worker._global_node = None   # ray.shutdown() disconnects the driver, and leaves the processes to us
    try:
        ray.shutdown()
    finally:
        if node is not None:
            if node.is_head():
                node.destroy_external_storage()   # what ray.shutdown() does before it ends them
            kill_ray_processes(node)


def kill_ray_processes(node: Any) -> None:
    """SIGKILL the processes of a local Ray ``node``, in end_local_ray's order: the
    raylet's children, then what Ray ends, in its order. Needs no live GCS."""
    import psutil  # Ray's own dependency
    from ray._private import ray_constants

    for info in node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, []):
        try:
            children = psutil.Process(info.process.pid).children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
    node.kill_all_processes(check_alive=False, allow_graceful=False, wait=True)


def local_gcs() -> tuple[Any, Any, str] | None:
    """The local Ray this driver started: its node (for kill_ray_processes), its GCS
    process (a ``subprocess.Popen``: ``poll()`` says when it is gone) and its logs
    folder. None when there is none (a cluster joined with --address)."""
    from ray._private import ray_constants, worker

    node = worker._global_node
    if node is None:
        return None
    infos: list[Any] = node.all_processes.get(ray_constants.PROCESS_TYPE_GCS_SERVER, [])
    if not infos:
        return None
    return node, infos[0].process, node.get_logs_dir_path()
