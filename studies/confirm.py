"""The confirmation stage: top-k configs and the baseline, full budget, several seeds.

A plain list of points in Tune (``BasicVariantGenerator``), FIFO scheduling,
no early stopping; results land in ``<run>/confirm/`` as a Tune experiment of
their own, and ``studies.report.confirmation`` reads them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from studies.report.confirmation import BASELINE_LABEL, CANDIDATES_FILE, CONFIRM_DIR
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


def select_candidates(spec: StudySpec, run: RunTrials) -> list[dict[str, Any]]:
    """Top-k distinct configs (complete trials first, by best metric) and the
    baseline: the best config with the spec's baseline values put in (so only
    the ablated factors differ)."""
    df = run.trials.copy()
    df["_complete"] = df["status"] == STATUS_COMPLETE
    df = df.sort_values(["_complete", f"best_{spec.metric}"], ascending=[False, spec.mode == "min"], na_position="last")
    configs, seen = [], set()
    for _, row in df.iterrows():
        params = _active_params(spec, {p.name: row[p.name] for p in spec.params})
        key = json.dumps(params, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        configs.append({"label": f"top{len(configs) + 1}", "params": params, "trial_id": row["trial_id"]})
        if len(configs) == spec.ablation.confirm.top_k:
            break
    if configs and spec.ablation.baseline:
        base = _active_params(spec, {**configs[0]["params"], **spec.ablation.baseline})
        configs.append({"label": BASELINE_LABEL, "params": base, "trial_id": None})
    return [{**c, "params": {k: (v.item() if hasattr(v, "item") else v) for k, v in c["params"].items()}} for c in configs]


def _placeholders(spec: StudySpec) -> dict[str, Any]:
    defaults = dataclasses.asdict(spec.family_info.config_cls()) if spec.family_info else {}
    return {p.name: spec.config.get(p.name, defaults.get(p.name)) for p in spec.params}


def run_confirmation(spec: StudySpec, run_dir: Path, run: RunTrials, data: dict[str, Any] | None, *, max_concurrent: int) -> Path:
    candidates = select_candidates(spec, run)
    seeds = [spec.seed + 1000 + i for i in range(spec.ablation.confirm.seeds)]
    folder = run_dir / CONFIRM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CANDIDATES_FILE).write_text(json.dumps(
        {"configs": candidates, "seeds": len(seeds), "seed_values": seeds, "max_epochs": spec.budget.max_epochs}, indent=2, default=str))
    fill = _placeholders(spec)
    # Every point names every parameter (Tune's points must), inactive ones at their fixed value.
    points = [{**fill, **c["params"], "seed": s, "confirm_label": c["label"]} for c in candidates for s in seeds]
    param_space = {**spec.trial_config(), **fill, "confirm_label": ""}
    print(f"confirmation: {len(candidates)} configs x {len(seeds)} seeds = {len(points)} runs of {spec.budget.max_epochs} epochs", flush=True)
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
