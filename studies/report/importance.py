"""Parameter importance over every trial at the modelled rung, on the declared domain.

Three columns, three questions; the table ranks by the first:

- **modelled**: the variance, over the declared space, of the factor's
  modelled marginal (studies.report.modelled: its levels equally likely, as
  they are in the declared space), i.e. its main effect in the surrogate the
  modelled tables use. Why rank by it: fANOVA's own forest, fitted on the
  trials, has the forest's blind spot under TPE (see the modelled module);
  on benchmarks/known_truth.py under the default TPE this put the dominant
  factor first in 10 of 10 studies, fANOVA in 7 of 10.

- **fANOVA** (Hutter, Hoos & Leyton-Brown, ICML 2014; Optuna's
  ``FanovaImportanceEvaluator``): how much of the variance of the metric over
  the whole declared space each parameter's main effect explains. Optuna's
  evaluators only read parameters present in every trial, so a conditional
  parameter is scored over the trials where it is active, together with every
  parameter also active there. Optuna returns a share of that subset's
  variance; multiplied by the subset's variance of the metric it becomes a
  variance in the metric's units squared, comparable across subsets, and the
  table ranks by it.
- **PED-ANOVA** (Watanabe et al., IJCAI 2023): what separates the top 10% of
  configs from the rest (a local question: which parameter the best region is
  narrow in), scored per parameter on the trials where it is active.

The domain is the declared range of each parameter, never the observed
min/max: a parameter sampled only in a narrow band is not made important by
stretching that band to the whole axis.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
import pandas as pd

from studies.spec.direction import Direction
from studies.spec.param import Param

MIN_TRIALS = 6
FANOVA_TREES = 32
# fANOVA's cost grows faster than the number of trials (1,000 trials: ~8 s idle, most of a
# 1,000-trial --report): above this it is fitted on a seeded random sample of the trials, and
# the table says so. Its column is the second opinion; the ranking is the modelled one.
FANOVA_MAX_TRIALS = 400


def _distribution(info: Param) -> optuna.distributions.BaseDistribution:
    if info.type == "categorical":
        return optuna.distributions.CategoricalDistribution(info.choices)
    assert info.low is not None and info.high is not None   # only declared factors are scored
    if info.type == "int":
        return optuna.distributions.IntDistribution(int(info.low), int(info.high), log=info.log)
    return optuna.distributions.FloatDistribution(float(info.low), float(info.high), log=info.log)


def _param_value(info: Param, v):
    if info.type == "categorical":
        return next((c for c in info.choices if c == v or str(c) == str(v)), v)
    return int(round(float(v))) if info.type == "int" else float(v)


def _study(configs: pd.DataFrame, values: pd.Series, infos: list[Param], mode: str) -> optuna.Study:
    study = optuna.create_study(direction=Direction(mode).optuna)
    dists = {f.name: _distribution(f) for f in infos}
    for idx in configs.index:
        params = {f.name: _param_value(f, configs.at[idx, f.name]) for f in infos}
        if any(f.numeric and not (f.low <= params[f.name] <= f.high) for f in infos):
            continue  # outside the declared range (a spec edited after the run): not in this domain
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(values.loc[idx])))
    return study


def param_importances(configs: pd.DataFrame, values: pd.Series, factors: list[Param], *, mode: str,
                      seed: int = 0) -> pd.DataFrame:
    """One row per parameter: fANOVA variance and share, PED-ANOVA score, the
    trials each was scored on, and a note where it could not be computed.
    ``configs``: one row per trial at the rung (NaN where inactive), ``values``
    the metric there."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    declared = [f for f in factors if f.declared and f.name in configs.columns]
    ok = values.dropna().index
    configs, values = configs.loc[ok], values.loc[ok].astype(float)
    rows = {}
    groups: dict[tuple, list[Param]] = {}
    for f in declared:
        active = configs[f.name].notna()
        groups.setdefault(tuple(active), []).append(f)
    for mask, members in groups.items():
        ids = configs.index[list(mask)]
        # Every parameter active in all of these trials enters the model, so
        # a conditional one is judged beside the ones that matter there too.
        infos = [g for g in declared if configs.loc[ids, g.name].notna().all()]
        y = values.loc[ids]
        fanova, note, fitted = {}, "", ids
        if len(ids) < MIN_TRIALS or y.nunique() < 2:
            note = f"too few trials ({len(ids)}) or one value"
        else:
            if len(ids) > FANOVA_MAX_TRIALS:
                fitted = ids[np.sort(np.random.default_rng(seed).choice(len(ids), FANOVA_MAX_TRIALS, replace=False))]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    study = _study(configs.loc[fitted], y.loc[fitted], infos, mode)
                    shares = optuna.importance.get_param_importances(
                        study, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=FANOVA_TREES, seed=seed),
                        params=[g.name for g in infos], normalize=False)
                variance = float(np.var(y.loc[fitted].to_numpy()))
                fanova = {k: (float(v) * variance, float(v)) for k, v in shares.items()}
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                note = str(exc)[:80]
        for f in members:
            ped = _ped_anova(configs.loc[ids], y, f, mode) if len(ids) >= MIN_TRIALS else math.nan
            var, share = fanova.get(f.name, (math.nan, math.nan))
            scope = "all" if all(mask) else f"{len(ids)} where active"
            if fanova and len(fitted) < len(ids):
                scope += f" (fANOVA: a random {len(fitted)})"
            rows[f.name] = {"parameter": f.name, "fanova_variance": var, "fanova_share_of_subset": share,
                            "ped_anova": ped, "trials": len(ids), "scored_on": scope, "note": note}
    table = pd.DataFrame([rows[f.name] for f in declared if f.name in rows],
                         columns=["parameter", "fanova_variance", "fanova_share_of_subset", "ped_anova", "trials",
                                  "scored_on", "note"])
    total = table["fanova_variance"].sum(min_count=1)
    table.insert(2, "fanova_share", table["fanova_variance"] / total if total and total > 0 else math.nan)
    return table.sort_values(["fanova_variance", "ped_anova"], ascending=False, na_position="last").reset_index(drop=True)


def with_modelled(table: pd.DataFrame, variances: dict[str, float]) -> pd.DataFrame:
    """Add the modelled main-effect variance (and its share) and rank by it."""
    out = table.copy()
    out.insert(1, "modelled_variance", out["parameter"].map(variances).astype(float))
    total = out["modelled_variance"].sum(min_count=1)
    out.insert(2, "modelled_share", out["modelled_variance"] / total if total and total > 0 else math.nan)
    return out.sort_values(["modelled_variance", "fanova_variance", "ped_anova"], ascending=False,
                           na_position="last").reset_index(drop=True)


def _ped_anova(configs: pd.DataFrame, y: pd.Series, f: Param, mode: str) -> float:
    if configs[f.name].nunique() < 2:
        return math.nan
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = _study(configs[[f.name]], y, [f], mode)
            return float(optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), normalize=False)[f.name])
    except (ValueError, RuntimeError, ZeroDivisionError, KeyError):
        return math.nan
