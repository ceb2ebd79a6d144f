"""After a study: Optuna holds exactly the trials of the Tune experiment
(studies.runs.optuna_store.reconcile_running_trials), whatever a killed driver or a
full disk left behind."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from studies.runs.optuna_store import reconcile_running_trials
from studies.runs.run_folder import ORPHANED_ATTR, TUNE_TRIAL_ID_ATTR
from studies.runs.trials import optuna_view


def _study(db: Path) -> optuna.Study:
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}")
    for tune_id, state in (("ran", TrialState.RUNNING), ("lost", TrialState.RUNNING), ("after_snapshot", TrialState.COMPLETE),
                           ("kept", TrialState.COMPLETE), ("stopped", TrialState.PRUNED)):
        t = study.ask()
        t.set_user_attr(TUNE_TRIAL_ID_ATTR, tune_id)
        if state == TrialState.COMPLETE:
            t.report(0.5, 4)
            study.tell(t, 0.5)
        elif state == TrialState.PRUNED:
            t.report(0.9, 1)
            study.tell(t, state=TrialState.PRUNED)
    return study


def test_optuna_keeps_exactly_the_trials_of_the_tune_experiment(tmp_path: Path) -> None:
    db = tmp_path / "optuna.db"
    _study(db)
    outcomes = {"ran": ({1: 0.8, 2: 0.6, 3: 0.5, 4: 0.4}, False), "kept": ({4: 0.5}, False), "stopped": ({1: 0.9}, False)}
    done = reconcile_running_trials(f"sqlite:///{db}", "s", outcomes, max_epochs=4)
    assert done == {"told": [0], "orphaned": [1], "set_aside": [2]}
    trials = {t.user_attrs[TUNE_TRIAL_ID_ATTR]: t for t in optuna.load_study(study_name="s", storage=f"sqlite:///{db}").trials}
    assert trials["ran"].state == TrialState.COMPLETE and trials["ran"].value == 0.4
    assert trials["ran"].intermediate_values == {1: 0.8, 2: 0.6, 3: 0.5, 4: 0.4}
    assert trials["lost"].state == TrialState.FAIL and trials["lost"].user_attrs[ORPHANED_ATTR]
    # Finished after the snapshot the resume went on from: it keeps its state, but is outside the study.
    assert trials["after_snapshot"].state == TrialState.COMPLETE
    read = optuna_view(tmp_path)   # what the tables read
    assert read["after_snapshot"].user_attrs[ORPHANED_ATTR] and read["lost"].user_attrs[ORPHANED_ATTR]
    kept = [tid for tid, t in read.items() if not t.user_attrs.get(ORPHANED_ATTR)]
    assert sorted(kept) == sorted(outcomes)
    again = reconcile_running_trials(f"sqlite:///{db}", "s", outcomes, max_epochs=4)
    assert again == {"told": [], "orphaned": [], "set_aside": []}   # idempotent
