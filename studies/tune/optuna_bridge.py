"""Ray Tune's OptunaSearch, telling Optuna the truth about early stopping.

Ray 2.60's ``OptunaSearch`` records a trial that ASHA stopped as COMPLETE with
the value of whatever epoch it stopped at, and the final result of such a
trial never reaches Optuna as an intermediate value. TPE then treats a 2-epoch
trial as a finished one, and optuna-dashboard shows no pruning at all. Here a
trial stopped before the full budget is told as PRUNED, with every epoch's
value as an intermediate value keyed by epoch, as Optuna's own pruners do.
Sampling stays Optuna's job and stopping stays the scheduler's (``NopPruner``).

Several objectives (``metric`` and ``mode`` lists): Optuna holds no
intermediate values for a multi-objective study (``Trial.report`` raises), so a
stopped trial is told PRUNED without them (its epochs are in the run folder),
and a trial that ran the full budget COMPLETE with every objective's value.
Ray's own OptunaSearch reports nothing per epoch there either, but keys its
bookkeeping by the metric and told stopped trials COMPLETE.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from studies._compat import (
    move_searcher_study,
    searcher_completed,
    searcher_study,
    searcher_trials,
    study_storage_url,
)
from studies.runs.optuna_store import STUDY_FILE_ENV, sqlite_storage, sqlite_url, trial_seed
from studies.runs.run_folder import TUNE_TRIAL_ID_ATTR

logger = logging.getLogger(__name__)

__all__ = ["STUDY_FILE_ENV", "TruthfulOptunaSearch"]


class TruthfulOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, max_epochs: int, time_attr: str = "epoch", study_seed: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs
        self._study_seed = study_seed
        self._time_attr = time_attr
        self._reported: dict[str, dict[int, float | list[float]]] = {}

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._follow_study_file()

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._follow_study_file()

    def _follow_study_file(self) -> None:
        """The study in the file ``STUDY_FILE_ENV`` names. A searcher whose storage is
        ours (UnsyncedSQLiteStorage) already opened that file while it was unpickled;
        this moves one pickled with Optuna's own RDBStorage (a run from before that)."""
        path = os.environ.get(STUDY_FILE_ENV)
        study = searcher_study(self)
        if path and study_storage_url(study) != sqlite_url(path):
            moved = optuna.load_study(study_name=study.study_name, storage=sqlite_storage(path, fsync=False), sampler=study.sampler,
                                      pruner=study.pruner)
            move_searcher_study(self, moved)

    def suggest(self, trial_id: str) -> dict | None:
        with warnings.catch_warnings():
            # Ray times our define-by-run function *including* the sampler's own work
            # (TPE over every trial so far, SQLite reads) and warns past 1 s, as if
            # training ran in it; on a busy machine or a long study that is just TPE.
            warnings.filterwarnings("ignore", message="Define-by-run function passed in the `space` argument took")
            config = super().suggest(trial_id)
        ot_trial = searcher_trials(self).get(trial_id)
        if ot_trial is not None and TUNE_TRIAL_ID_ATTR not in ot_trial.user_attrs:
            ot_trial.set_user_attr(TUNE_TRIAL_ID_ATTR, trial_id)
        if config is not None and ot_trial is not None:
            config = {**config, "trial_seed": trial_seed(self._study_seed, ot_trial.number)}
        return config

    @property
    def objectives(self) -> list[str]:
        return list(self.metric) if isinstance(self.metric, list) else [self.metric]

    def _record(self, trial_id: str, result: dict | None) -> None:
        metrics = self.objectives
        if not result or self._time_attr not in result or any(m not in result for m in metrics):
            return
        step = int(result[self._time_attr])
        seen = self._reported.setdefault(trial_id, {})
        try:
            values = [float(result[m]) for m in metrics]
        except (TypeError, ValueError):
            return
        if step in seen or not all(math.isfinite(v) for v in values):
            return
        seen[step] = values if len(metrics) > 1 else values[0]
        if len(metrics) > 1:
            return  # Optuna keeps no intermediate values for several objectives
        try:
            searcher_trials(self)[trial_id].report(values[0], step)
        except (optuna.exceptions.OptunaError, RuntimeError, ValueError) as exc:
            # After a killed driver is resumed, the restored searcher may hold a
            # trial that Optuna already recorded as finished: keep Optuna's record.
            logger.warning("Optuna refused epoch %s of trial %s: %s", step, trial_id, exc)
            searcher_completed(self).add(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in searcher_completed(self) or trial_id not in searcher_trials(self):
            return
        self._record(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in searcher_completed(self) or trial_id not in searcher_trials(self):
            return
        self._record(trial_id, result)
        ot_trial = searcher_trials(self)[trial_id]
        steps = self._reported.get(trial_id, {})
        last_step = max(steps) if steps else 0
        value: float | list[float] | None
        if error or not steps:
            state, value = TrialState.FAIL, None
        elif last_step < self._max_epochs:
            state, value = TrialState.PRUNED, None
        else:
            state, value = TrialState.COMPLETE, steps[last_step]
        try:
            searcher_study(self).tell(ot_trial, value, state=state)
        except (optuna.exceptions.OptunaError, ValueError, RuntimeError) as exc:  # e.g. told twice after a restore
            logger.warning("Optuna refused the result of trial %s: %s", trial_id, exc)
        searcher_completed(self).add(trial_id)
        self._reported.pop(trial_id, None)


