"""Parameter importance with Optuna's PED-ANOVA (Watanabe et al. 2023,
"PED-ANOVA: Efficiently Quantifying Hyperparameter Importance in Arbitrary
Subspaces"), over the same like-for-like values as the ablation tables.

Optuna's evaluators only read COMPLETE trials and only parameters present in
every trial. Here each trial that reached the chosen rung enters as COMPLETE
with its value at that rung, and each parameter is scored over the trials in
which it was sampled (conditional parameters included), unnormalised so that
scores from different subsets stay comparable.
"""

from __future__ import annotations

import math
import warnings

import optuna
import pandas as pd

from studies.report.ablation import AblationResult, FactorInfo
from studies.report.trials import RunTrials


def _distribution(info: FactorInfo, values: pd.Series) -> optuna.distributions.BaseDistribution:
    if info.type == "categorical":
        return optuna.distributions.CategoricalDistribution(info.choices)
    lo, hi = float(values.min()), float(values.max())
    if info.type == "int":
        return optuna.distributions.IntDistribution(int(lo), int(max(hi, lo + 1)), log=info.log)
    return optuna.distributions.FloatDistribution(lo, hi if hi > lo else lo + 1e-12, log=info.log and lo > 0)


def param_importances(run: RunTrials, ablation: AblationResult, factors: list[FactorInfo]) -> pd.DataFrame:
    """One row per parameter: PED-ANOVA score, trials used, and a note when it
    could not be computed (too few trials)."""
    values = ablation.values
    trials = run.trials.set_index("trial_id")
    rows = []
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for info in factors:
        if info.name not in trials.columns:
            continue
        col = trials[info.name].reindex(values.index)
        ids = col.dropna().index
        if len(ids) < 4 or col.loc[ids].nunique() < 2:
            rows.append({"parameter": info.name, "importance": math.nan, "trials": len(ids), "note": "too few trials or a single value"})
            continue
        dist = _distribution(info, col.loc[ids])
        study = optuna.create_study(direction="minimize" if ablation.mode == "min" else "maximize")
        for tid in ids:
            study.add_trial(optuna.trial.create_trial(
                params={info.name: col.loc[tid] if info.type == "categorical" else float(col.loc[tid]) if info.type == "float" else int(col.loc[tid])},
                distributions={info.name: dist}, value=float(values.loc[tid])))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                score = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), normalize=False)[info.name]
            rows.append({"parameter": info.name, "importance": float(score), "trials": len(ids), "note": ""})
        except (ValueError, RuntimeError, ZeroDivisionError, KeyError) as exc:
            rows.append({"parameter": info.name, "importance": math.nan, "trials": len(ids), "note": str(exc)[:80]})
    table = pd.DataFrame(rows, columns=["parameter", "importance", "trials", "note"])
    return table.sort_values("importance", ascending=False, na_position="last").reset_index(drop=True)
