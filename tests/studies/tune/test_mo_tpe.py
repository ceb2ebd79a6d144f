"""Several objectives under early stopping: trials ASHA stopped (PRUNED, with no
values: Optuna keeps none for several objectives) must not become TPE's good ones."""

from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from studies.tune.mo_tpe import FullBudgetTPESampler


def _study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """60 early trials stopped at x in [0.8, 1], then 2 that ran the full budget at x near 0.1 (the good ones)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    dist = {"x": FloatDistribution(0.0, 1.0)}
    rng = np.random.default_rng(0)
    for x in rng.uniform(0.8, 1.0, 60):
        study.add_trial(create_trial(state=TrialState.PRUNED, params={"x": float(x)}, distributions=dist))
    for x in (0.1, 0.12):
        study.add_trial(create_trial(state=TrialState.COMPLETE, params={"x": x}, distributions=dist, values=[x, 1 - x]))
    return study


def _share_near_the_good_ones(sampler: optuna.samplers.BaseSampler) -> float:
    study = _study(sampler)
    xs = []
    for _ in range(40):
        trial = study.ask({"x": FloatDistribution(0.0, 1.0)})
        xs.append(trial.params["x"])
        study.tell(trial, state=TrialState.FAIL)   # not told as a result: the study stays as built
    return float(np.mean(np.array(xs) < 0.5))


def test_stopped_trials_are_not_tpes_good_ones() -> None:
    ours = _share_near_the_good_ones(FullBudgetTPESampler(seed=1, n_startup_trials=0))
    optunas = _share_near_the_good_ones(optuna.samplers.TPESampler(seed=1, n_startup_trials=0))
    # Optuna's TPE tops its good group up with the earliest pruned trials (all tie without values): it samples
    # near x = 0.9; ours samples near the two full-budget trials.
    assert ours > 0.7 and optunas < 0.4, (ours, optunas)


def test_the_good_group_is_optunas_when_enough_trials_completed() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)   # no deprecated argument
        sampler = FullBudgetTPESampler(seed=0)
    sampler._n_complete = 1000
    assert [sampler._capped_gamma(n) for n in (0, 9, 10, 11, 300)] == [0, 1, 1, 2, 30]   # Optuna's, for several objectives
    sampler._n_complete = 2
    assert sampler._capped_gamma(300) == 2
