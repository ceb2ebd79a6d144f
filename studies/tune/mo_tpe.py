"""Optuna's TPE for several objectives under early stopping: only trials that
ran the full budget may be "good".

Why: TPE splits the trials into a good group (the best ``gamma(n)``) and the
rest. It fills the good group from COMPLETE trials first, then tops it up with
PRUNED ones ranked by their last intermediate value. With several objectives
Optuna holds no intermediate values, so every pruned trial ties and the top-up
takes the *earliest* ones: mostly random start-up trials that ASHA stopped at
its first rung. TPE then samples around configs a scheduler judged poor.
Measured in ``benchmarks/mo_asha.py`` (10 seeds): in the seeds where
multi-objective ASHA + TPE did worst, pruned trials made up 45-73% of the good
group. Here the good group is capped at the number of COMPLETE trials, so a
trial ASHA stopped always counts with the rest, as ASHA's verdict says it
should. A single-objective study keeps Optuna's TPE (its pruned trials carry
their intermediate values, and their ranking is meaningful).
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState

from studies._compat import set_tpe_gamma


def optuna_default_gamma(n: int) -> int:
    """Optuna's own TPE default for several objectives (``ceil(0.1 n)``), restated: its function is private."""
    return int(math.ceil(0.1 * n))


class FullBudgetTPESampler(optuna.samplers.TPESampler):
    """``TPESampler`` whose good group holds COMPLETE trials only (see the module docstring).
    Optuna 4.9 deprecated TPE's ``gamma`` argument (a FutureWarning on every run), so
    the cap is set on the built sampler (studies._compat.set_tpe_gamma)."""

    def __init__(self, **kwargs: Any) -> None:
        self._n_complete = 0
        super().__init__(**kwargs)
        set_tpe_gamma(self, self._capped_gamma)

    def _capped_gamma(self, n: int) -> int:
        return min(optuna_default_gamma(n), self._n_complete)

    def _count(self, study: optuna.Study) -> None:
        self._n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, optuna.distributions.BaseDistribution]) -> dict[str, Any]:
        self._count(study)
        return super().sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution) -> Any:
        self._count(study)
        return super().sample_independent(study, trial, param_name, param_distribution)
