"""``optuna.db``: the run's Optuna study file on disk (Ray-free).

Its storage (SQLite, waiting for another process's lock; unsynced for the live
searcher), each trial's seed from its number, and the reconciliation that
leaves no trial RUNNING once a study has finished.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from studies._compat import set_trial_intermediate_value, set_trial_user_attr
from studies.runs.run_folder import ORPHANED_ATTR, SET_ASIDE_ATTR, TUNE_TRIAL_ID_ATTR


def trial_seed(study_seed: int, trial_number: int) -> int:
    """Each search trial's own seed, from the study seed and its Optuna trial
    number: reproducible across runs, independent between trials."""
    return int(np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0])


# How long a write waits for another process's lock on optuna.db (a dashboard,
# a backup, a --report reading it) before it fails: SQLite's default is 5 s.
SQLITE_LOCK_TIMEOUT_S = 60


# The optuna.db of the run folder being resumed, as this machine sees it: set by
# studies.tune.tuner around Tuner.restore and Tuner.fit. Tune pickles the
# searcher with its storage (into tuner.pkl and each searcher-state-*.pkl), and
# a pickled storage holds the absolute URL of the folder where the run started:
# gone when the folder moved or the run is resumed from a bucket on another
# machine, and the *wrong* study (the original's) when the folder was copied.
STUDY_FILE_ENV = "RAYSTUDIES_OPTUNA_DB"


def sqlite_url(path: str) -> str:
    return f"sqlite:///{path}"


def sqlite_storage(path: str, *, fsync: bool = True) -> optuna.storages.RDBStorage:
    """A SQLite study file; optuna-dashboard opens the same URL. Writes wait for a
    lock held elsewhere (up to SQLITE_LOCK_TIMEOUT_S) instead of failing the study.
    ``fsync=False``: the live searcher's storage (UnsyncedSQLiteStorage)."""
    kind = optuna.storages.RDBStorage if fsync else UnsyncedSQLiteStorage
    return kind(sqlite_url(path), engine_kwargs={"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}})


def _synchronous_off(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


class UnsyncedSQLiteStorage(optuna.storages.RDBStorage):
    """The searcher's study file, written without an fsync per transaction
    (``PRAGMA synchronous=OFF``; the rollback journal stays).

    Why: Optuna commits each parameter, intermediate value and result on its
    own, and the fsync of each was a third of Optuna's time per trial
    (benchmarks/README.md, section 8). What is given up is only what a power
    loss or kernel crash could do to the file: a killed driver's writes are in
    the operating system already, and SQLite's journal still undoes a write the
    kill cut short. The rest of a run folder (Tune's snapshot, the trials'
    records) is not fsynced either, and a damaged ``optuna.db`` is refused on
    ``--resume`` and rebuilt from the trial folders once moved aside (README,
    "Faults and resumption"). Kept across pickling: Tune pickles the searcher
    with its storage into the experiment snapshot.

    Unpickled while ``STUDY_FILE_ENV`` names a study file, it opens that file
    instead of the one it was pickled with: the one place where a resumed run's
    searcher, the study it holds and that study's open trials (all sharing
    this object) are re-pointed at the run folder being resumed, before
    SQLAlchemy opens anything (the old path may not exist, or be another run)."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._unsynced()

    def __setstate__(self, state: dict[str, Any]) -> None:
        moved = os.environ.get(STUDY_FILE_ENV)
        if moved:
            state = {**state, "url": sqlite_url(moved)}
        super().__setstate__(state)
        self._unsynced()

    def _unsynced(self) -> None:
        import sqlalchemy

        sqlalchemy.event.listen(self.engine, "connect", _synchronous_off)
        self.engine.dispose()   # the connections Optuna opened to set the file up are synced ones



def reconcile_running_trials(
    storage_url: str,
    study_name: str,
    outcomes: dict[str, tuple[dict[int, Any], bool]],
    max_epochs: int,
) -> dict[str, list[int]]:
    """After a study has finished, no Optuna trial may stay RUNNING.

    ``outcomes`` maps each Tune trial id to (metric by epoch, failed?) as read
    from the run folder; for several objectives each epoch's value is the list
    of them (Optuna then holds no intermediate values). A RUNNING trial that Tune ran (its end never reached
    Optuna because the driver was killed) is told what happened, with any
    missing intermediate values; one that Tune never recorded (asked for by a
    driver killed a moment later) is told FAIL and tagged ``orphaned``.

    A trial that finished in Optuna but is not in the Tune experiment (it ran
    after the last snapshot a resume went on from: a driver killed, a disk
    that filled) is set aside (its Tune id in the study's ``SET_ASIDE_ATTR``;
    a finished trial can no longer be written) and read as orphaned: the resumed
    experiment made a new trial in its place, so counting it would put the study
    past ``num_samples``. The sampler still learns from its result.
    """
    study = optuna.load_study(study_name=study_name, storage=sqlite_storage(storage_url.removeprefix("sqlite:///")))
    done: dict[str, list[int]] = {"told": [], "orphaned": [], "set_aside": []}
    set_aside = set(study.user_attrs.get(SET_ASIDE_ATTR, []))
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        tune_id = t.user_attrs.get(TUNE_TRIAL_ID_ATTR)
        if tune_id is not None and tune_id not in outcomes and tune_id not in set_aside and not t.user_attrs.get(ORPHANED_ATTR):
            set_aside.add(tune_id)
            done["set_aside"].append(t.number)
    if done["set_aside"]:
        study.set_user_attr(SET_ASIDE_ATTR, sorted(set_aside))
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tune_id = t.user_attrs.get(TUNE_TRIAL_ID_ATTR)
        if tune_id not in outcomes:
            set_trial_user_attr(study, t, ORPHANED_ATTR, True)
            study.tell(t.number, state=TrialState.FAIL)
            done["orphaned"].append(t.number)
            continue
        values, failed = outcomes[tune_id]
        for epoch, value in sorted(values.items()):
            if len(study.directions) == 1 and epoch not in t.intermediate_values and math.isfinite(value):
                set_trial_intermediate_value(study, t, epoch, value)
        last = max(values) if values else 0
        if failed or not values:
            study.tell(t.number, state=TrialState.FAIL)
        elif last < max_epochs:
            study.tell(t.number, state=TrialState.PRUNED)
        else:
            study.tell(t.number, values[last], state=TrialState.COMPLETE)
        done["told"].append(t.number)
    return done
