"""The designed stage: top-k configs and the baseline (confirmation), and the
best config with one factor at a time at its baseline (leave-one-out), each
at the full budget over the same seeds.

A plain list of points in Tune (``BasicVariantGenerator``), FIFO scheduling,
no early stopping; results land in ``<run>/confirm/`` as a Tune experiment of
their own, and ``studies.report.confirmation`` reads them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from studies.report.confirmation import BASELINE_LABEL, CANDIDATES_FILE, CONFIRM_DIR, LOO_PREFIX
from studies.report.trials import STATUS_COMPLETE, RunTrials
from studies.spec import StudySpec
from studies.tuner import make_trainable, progress_callback, trial_dirname


def _active_params(spec: StudySpec, values: dict[str, Any]) -> dict[str, Any]:
    """Keep the parameters that are sampled under these values (``when`` rules)."""
    out: dict[str, Any] = {}
    for p in spec.params:
        if p.name in values and values[p.name] is not None and values[p.name] == values[p.name] and p.active(out):
            out[p.name] = values[p.name]
    return out


def _rank_value(row: pd.Series, metric: str) -> float:
    """A trial's standing: its value at the full budget (what Optuna holds)
    when it got there, else its best epoch (only ranks unfinished trials)."""
    return row[f"last_{metric}"] if row["status"] == STATUS_COMPLETE else row[f"best_{metric}"]


def _loo(spec: StudySpec) -> Any:
    loo = getattr(spec.ablation, "leave_one_out", None)
    return loo if loo is not None and getattr(loo, "enabled", True) else None


def select_candidates(spec: StudySpec, run: RunTrials, *, confirm: bool = True) -> dict[str, Any]:
    """The designed stage's configs, each re-run at the full budget over seeds.

    Confirmation (``confirm``): the top-k distinct configs (complete trials
    first, by their full-budget value) and the baseline, i.e. the best config
    with every spec baseline value put in. Leave-one-out (when the spec asks):
    the best config with one factor at a time set to its baseline value.
    A config asked for twice runs once, under its first label."""
    df = run.trials.copy()
    df["_complete"] = df["status"] == STATUS_COMPLETE
    df["_value"] = [_rank_value(r, spec.metric) for _, r in df.iterrows()]
    df = df.sort_values(["_complete", "_value"], ascending=[False, spec.mode == "min"], na_position="last")
    loo = _loo(spec)
    top_k = spec.ablation.confirm.top_k if confirm else 1
    tops, seen = [], set()
    for _, row in df.iterrows():
        params = _active_params(spec, {p.name: row[p.name] for p in spec.params})
        key = _key(params)
        if key in seen:
            continue
        seen.add(key)
        tops.append({"label": f"top{len(tops) + 1}", "params": params, "trial_id": row["trial_id"]})
        if len(tops) == top_k:
            break
    configs = [dict(c, roles=["confirm"] if confirm else []) for c in tops]
    skipped: dict[str, str] = {}
    if configs and confirm and spec.ablation.baseline:
        base = _active_params(spec, {**configs[0]["params"], **spec.ablation.baseline})
        configs.append({"label": BASELINE_LABEL, "params": base, "trial_id": None, "roles": ["confirm"]})
    if configs and loo is not None:
        best = configs[0]
        best["roles"] = [*best["roles"], "loo_best"]
        factors = spec.ablation.factors or [p.name for p in spec.params]
        for factor in factors:
            if factor not in spec.ablation.baseline:
                skipped[factor] = "the spec names no baseline value for it"
                continue
            if factor not in best["params"]:
                skipped[factor] = "not active in the best config"
                continue
            if _same_value(best["params"][factor], spec.ablation.baseline[factor]):
                skipped[factor] = "the best config already has its baseline value"
                continue
            params = _active_params(spec, {**best["params"], factor: spec.ablation.baseline[factor]})
            configs.append({"label": f"{LOO_PREFIX}{factor}", "params": params, "trial_id": None,
                            "roles": ["loo"], "factor": factor})
    merged: dict[str, dict[str, Any]] = {}
    for c in configs:  # one run per distinct config, every label it answers to kept
        key = _key(c["params"])
        if key in merged:
            merged[key]["aliases"].append(c["label"])
            merged[key]["roles"] += [r for r in c["roles"] if r not in merged[key]["roles"]]
            if "factor" in c:
                merged[key].setdefault("factors", []).append(c["factor"])
            continue
        merged[key] = {**c, "aliases": [], "factors": [c["factor"]] if "factor" in c else []}
        merged[key].pop("factor", None)
    n_confirm = spec.ablation.confirm.seeds if confirm else 0
    n_loo = loo.seeds if loo is not None else 0
    out = []
    for c in merged.values():
        seeds = max(n_confirm if "confirm" in c["roles"] else 0, n_loo if {"loo", "loo_best"} & set(c["roles"]) else 0)
        params = {k: (v.item() if hasattr(v, "item") else v) for k, v in c["params"].items()}
        out.append({**c, "params": params, "seeds": seeds})
    return {"configs": out, "loo_skipped": skipped, "confirm": confirm, "leave_one_out": loo is not None,
            "confirm_seeds": n_confirm, "loo_seeds": n_loo}


def _key(params: dict[str, Any]) -> str:
    return json.dumps({k: (round(float(v), 12) if isinstance(v, float) else v) for k, v in params.items()},
                      sort_keys=True, default=str)


def _same_value(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


def _placeholders(spec: StudySpec) -> dict[str, Any]:
    defaults = dataclasses.asdict(spec.family_info.config_cls()) if spec.family_info else {}
    return {p.name: spec.config.get(p.name, defaults.get(p.name)) for p in spec.params}


def run_confirmation(spec: StudySpec, run_dir: Path, run: RunTrials, data: dict[str, Any] | None, *, max_concurrent: int,
                     confirm: bool = True) -> Path:
    """The designed stage: confirmation and/or leave-one-out, one Tune experiment."""
    plan = select_candidates(spec, run, confirm=confirm)
    candidates = plan["configs"]
    n_seeds = max([c["seeds"] for c in candidates] or [0])
    seeds = [spec.seed + 1000 + i for i in range(n_seeds)]
    folder = run_dir / CONFIRM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CANDIDATES_FILE).write_text(json.dumps(
        {**plan, "seeds": spec.ablation.confirm.seeds, "seed_values": seeds, "max_epochs": spec.budget.max_epochs},
        indent=2, default=str))
    fill = _placeholders(spec)
    # Every point names every parameter (Tune's points must), inactive ones at their fixed value.
    points = [{**fill, **c["params"], "seed": s, "confirm_label": c["label"]} for c in candidates for s in seeds[:c["seeds"]]]
    param_space = {**spec.trial_config(), **fill, "confirm_label": ""}
    what = " + ".join(w for w, on in (("confirmation", confirm), ("leave-one-out", plan["leave_one_out"])) if on)
    print(f"{what}: {len(candidates)} configs over up to {len(seeds)} seeds = {len(points)} runs of "
          f"{spec.budget.max_epochs} epochs", flush=True)
    tuner = tune.Tuner(
        make_trainable(spec, data),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=BasicVariantGenerator(points_to_evaluate=points, max_concurrent=max_concurrent),
            num_samples=len(points), metric=spec.metric, mode=spec.mode,
            max_concurrent_trials=max_concurrent, reuse_actors=True, trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=CONFIRM_DIR, storage_path=str(run_dir), verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures),
            callbacks=[progress_callback(dataclasses.replace(spec, budget=dataclasses.replace(spec.budget, num_samples=len(points))))],
        ),
    )
    tuner.fit()
    return folder
