"""The designed stage: top-k configs and the baseline (confirmation), and the
best config with one factor at a time at its baseline (leave-one-out), each
at the full budget over the same seeds.

A plain list of points in Tune (``BasicVariantGenerator``), FIFO scheduling,
no early stopping; results land in ``<run>/designed/`` as a Tune experiment of
their own, and ``studies.report.confirmation`` reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from studies._compat import fit_interrupted
from studies.quiet import environ, quiet_tune
from studies.runs.designed import plan_designed, plan_front_confirmation
from studies.runs.designed_record import continue_stage, planned_pairs, read_plan
from studies.runs.remote_storage import RemoteStore
from studies.runs.run_folder import RunFolder
from studies.runs.trials import RunTrials
from studies.spec.study import StudySpec
from studies.tune.metric_check import LENIENT_METRICS_ENV, StopWithoutMetric
from studies.tune.tuner import make_trainable, progress_callback, trial_dirname, tune_storage


def select_candidates(spec: StudySpec, run: RunTrials, *, confirm: bool = True) -> dict[str, Any]:
    if spec.multi_objective:   # several objectives: the front is confirmed, there is no single best to leave one out of
        return plan_front_confirmation(run, params=spec.params, metrics=spec.metrics, modes=spec.modes,
                                       baseline=spec.reference_point(), max_epochs=spec.budget.max_epochs,
                                       top_k=spec.ablation.confirm.top_k, seeds=spec.ablation.confirm.seeds)
    loo = getattr(spec.ablation, "leave_one_out", None)
    loo_seeds = loo.seeds if loo is not None and loo.enabled else 0
    sweep = list(loo.sweep) if loo is not None and loo.enabled else []
    return plan_designed(run, params=spec.params, metric=spec.metric, mode=spec.mode, baseline=spec.ablation.baseline,
                         factors=spec.ablation.factors or [p.name for p in spec.params], top_k=spec.ablation.confirm.top_k,
                         confirm_seeds=spec.ablation.confirm.seeds if confirm else 0, loo_seeds=loo_seeds,
                         sweep=sweep)


def _placeholders(spec: StudySpec) -> dict[str, Any]:
    defaults = spec.family_info.defaults() if spec.family_info else {}
    return {p.name: spec.config.get(p.name, defaults.get(p.name)) for p in spec.params}


def designed_space(base: dict[str, Any], points: list[dict[str, Any]]) -> dict[str, Any]:
    """The param space for a list of points: each key a point sets is declared
    as the categorical of exactly the values the points give it. Tune checks
    every point against the space and warns ("Pre-set value ... is not equal")
    for a key the space holds as a different fixed value; nothing is ever
    sampled from these domains, since every point sets every key."""
    space = dict(base)
    for key in dict.fromkeys(k for p in points for k in p):
        values: list[Any] = []
        for p in points:
            if p[key] not in values:
                values.append(p[key])
        space[key] = tune.choice(values)
    return space


def _plan(spec: StudySpec, folder: RunFolder, run: RunTrials, confirm: bool) -> dict[str, Any]:
    """The stage's plan: the one it was started with, when it continues (the
    same configs and seeds, whatever the search's table says now); else a new
    one, written before anything runs."""
    plan = read_plan(folder)
    if plan is not None:
        return plan
    plan = select_candidates(spec, run, confirm=confirm)
    n_seeds = max([c["seeds"] for c in plan["configs"]] or [0])
    plan = {**plan, "seeds": spec.ablation.confirm.seeds, "seed_values": [spec.seed + 1000 + i for i in range(n_seeds)],
            "max_epochs": spec.budget.max_epochs}
    folder.designed.mkdir(parents=True, exist_ok=True)
    folder.candidates.write_text(json.dumps(plan, indent=2, default=str))
    return plan


def run_designed_stage(spec: StudySpec, run_dir: Path, run: RunTrials, data: dict[str, Any] | None, *, max_concurrent: int,
                       confirm: bool = True, remote: RemoteStore | None = None) -> bool:
    """The designed stage: confirmation and/or leave-one-out, one Tune experiment;
    a stage that was stopped continues with the (label, seed) pairs not done.
    Returns whether a stop signal interrupted it."""
    folder = RunFolder(run_dir)
    plan = _plan(spec, folder, run, confirm)
    done = continue_stage(folder, int(plan["max_epochs"]), set_aside=remote is None)
    params = {c["label"]: c["params"] for c in plan["configs"]}
    fill = _placeholders(spec)
    # Every point names every parameter (Tune's points must), inactive ones at their fixed value.
    planned = planned_pairs(plan)
    points = [{**fill, **params[label], "seed": s, "trial_seed": s, "confirm_label": label}
              for label, s in planned if (label, s) not in done]
    what = " + ".join(w for w, on in (("confirmation", plan["confirm"]), ("leave-one-out", plan["leave_one_out"])) if on)
    print(f"{what}: {len(plan['configs'])} configs over up to {len(plan['seed_values'])} seeds = {len(planned)} runs of "
          f"{plan['max_epochs']} epochs" + (f"; {len(planned) - len(points)} done before, {len(points)} to run"
                                            if done else ""), flush=True)
    if not points:
        return False
    tuner = tune.Tuner(
        make_trainable(spec, data),
        param_space=designed_space(spec.trial_config(), points),
        tune_config=tune.TuneConfig(
            # The generator limits concurrency itself (Tune ignores max_concurrent_trials for it, and says so).
            search_alg=BasicVariantGenerator(points_to_evaluate=points, max_concurrent=max_concurrent),
            num_samples=len(points),
            reuse_actors=True, trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=folder.designed.name, **tune_storage(run_dir, remote), verbose=0,
            stop=StopWithoutMetric(spec.metrics if spec.multi_objective else spec.metric),
            failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures),
            callbacks=[progress_callback(spec, workers=max_concurrent, early_stopping=False, num_samples=len(points),
                                         show_best=False)],
        ),
    )
    with quiet_tune(), environ(**LENIENT_METRICS_ENV):
        _, interrupted = fit_interrupted(tuner.fit)
    return interrupted
