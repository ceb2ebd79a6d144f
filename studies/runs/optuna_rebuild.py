"""optuna.db rebuilt from the trials on disk (Ray-free).

The trial folders and Tune's snapshot are the truth of a run; ``optuna.db`` is
the sampler's memory of it. When that file is gone, ``--resume`` rebuilds it:
every trial with its Optuna number (recovered from its ``trial_seed``, which
is derived from the study seed and that number), its parameters and their
distributions (the search space replayed on the recorded values), every epoch
as an intermediate value, and its state as the searcher would have told it.
The numbers, and so the storage's trial ids, come out as they were, which is
what the searcher Tune restores (it holds each trial by that id) needs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FixedTrial, TrialState, create_trial

from studies.errors import UserError
from studies.quiet import quiet_optuna
from studies.runs.optuna_store import sqlite_storage, trial_seed
from studies.runs.run_folder import ORPHANED_ATTR, TUNE_TRIAL_ID_ATTR
from studies.runs.trials import TuneTrial, read_tune_trials, tune_snapshot
from studies.spec.search_space import define_by_run
from studies.spec.study import StudySpec

# Tune statuses of trials it will go on with after a resume (Optuna: RUNNING).
UNFINISHED = ("RUNNING", "PENDING", "PAUSED")


def _trial_number(seed_of: dict[int, int], t: TuneTrial) -> int:
    seed = t.config.get("trial_seed")
    if seed not in seed_of:
        raise UserError(f"{t.trial_dir}/params.json: trial_seed {seed!r} is no trial number's seed for this study "
                        "seed; optuna.db cannot be rebuilt: restore it from a backup, or start a new run")
    return seed_of[seed]


def _frozen(spec: StudySpec, t: TuneTrial, tune_status: str | None) -> optuna.trial.FrozenTrial:
    fixed = FixedTrial({p.name: t.config[p.name] for p in spec.params if p.name in t.config})
    try:
        define_by_run(spec.params)(fixed)   # the distributions of the parameters this config made active
    except ValueError as exc:   # an active parameter missing from params.json
        raise UserError(f"{t.trial_dir}/params.json: {exc}; optuna.db cannot be rebuilt: restore it from a backup, "
                        "or start a new run") from None
    values = t.values_for_optuna(spec.metrics)
    attrs: dict[str, Any] = {TUNE_TRIAL_ID_ATTR: t.trial_id}
    last = max(values) if values else 0
    if tune_status is None:   # started, but never in a snapshot: lost with the killed driver
        state, value = TrialState.FAIL, None
        attrs[ORPHANED_ATTR] = True
    elif tune_status in UNFINISHED:
        state, value = TrialState.RUNNING, None
    elif tune_status == "ERROR" or not values:
        state, value = TrialState.FAIL, None
    elif last >= spec.budget.max_epochs:
        state, value = TrialState.COMPLETE, values[last]
    elif spec.multi_objective:   # no intermediate values for several objectives, so no value either
        state, value = TrialState.PRUNED, None
    else:   # Optuna keeps a pruned trial's last intermediate value as its value
        state, value = TrialState.PRUNED, values[last]
    if spec.multi_objective:
        return create_trial(state=state, values=value, params=fixed.params, distributions=fixed.distributions,
                            user_attrs=attrs)
    return create_trial(state=state, value=value, params=fixed.params, distributions=fixed.distributions,
                        user_attrs=attrs, intermediate_values=values)


def rebuild_optuna_study(run_dir: Path, db: Path, spec: StudySpec) -> int:
    """Write ``db`` (which must not exist) from ``run_dir``'s trials; returns how many."""
    trials = read_tune_trials(run_dir)
    snapshot = tune_snapshot(run_dir)
    statuses = {tid: t["status"] for tid, t in snapshot.items()}
    have = {t.trial_id for t in trials}
    # Trials Tune knows but that have no folder yet (pending, or not yet copied in): from the snapshot.
    trials += [TuneTrial(run_dir / f"trial_{tid}", tid, t["config"], {}, "") for tid, t in snapshot.items() if tid not in have]
    seed_of = {trial_seed(spec.seed, n): n for n in range(2 * len(trials) + spec.budget.num_samples + 16)}
    by_number: dict[int, TuneTrial] = {}
    for t in trials:
        n = _trial_number(seed_of, t)
        if n in by_number:
            raise UserError(f"{t.trial_dir} and {by_number[n].trial_dir}: the same Optuna trial number {n}; "
                            "optuna.db cannot be rebuilt: restore it from a backup, or start a new run")
        by_number[n] = t
    tmp = db.with_name(db.name + ".rebuilding")
    for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
        leftover.unlink(missing_ok=True)
    set_aside_stale_journal(db)
    with quiet_optuna():
        study = optuna.create_study(study_name=spec.name, storage=sqlite_storage(str(tmp)),
                                    directions=["minimize" if m == "min" else "maximize" for m in spec.modes])
        for n in range(max(by_number) + 1 if by_number else 0):
            if n in by_number:
                study.add_trial(_frozen(spec, by_number[n], statuses.get(by_number[n].trial_id)))
            else:   # asked for by a killed driver, never started: as reconcile marks it
                study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={ORPHANED_ATTR: True}))
    del study
    os.replace(tmp, db)
    return len(by_number)


def missing_from_db(run_dir: Path, db: Path, study_name: str) -> list[str]:
    """Tune trial ids of the run's newest snapshot that ``db`` does not hold.

    A run in a bucket gets Tune's snapshot and ``optuna.db`` uploaded file by
    file in Tune's background thread; a driver killed mid-upload leaves an
    ``optuna.db`` from the snapshot before. The searcher restored from the
    newer snapshot then tells its results to trials the file does not have,
    and they are lost to Optuna (and to the sampler)."""
    snapshot = tune_snapshot(run_dir)
    if not snapshot:
        return []
    with quiet_optuna():
        held = {t.user_attrs.get(TUNE_TRIAL_ID_ATTR)
                for t in optuna.load_study(study_name=study_name, storage=sqlite_storage(str(db))).get_trials(deepcopy=False)}
    return sorted(tid for tid in snapshot if tid not in held)


def set_aside_stale_journal(db: Path) -> Path | None:
    """A SQLite journal beside a missing ``db`` belongs to the file that was moved
    away (``mv optuna.db optuna.db.damaged`` leaves it): SQLite would roll it back
    into the next file created at ``db``. Renamed to ``*-journal.orphaned``."""
    journal = db.with_name(db.name + "-journal")
    if db.exists() or not journal.exists():
        return None
    aside = db.with_name(db.name + "-journal.orphaned")
    os.replace(journal, aside)
    return aside
