"""What the designed stage runs: which configs, over how many seeds. Ray-free,
so benchmarks and tests plan it exactly as a study does (studies.tune.designed_stage runs it)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from studies.runs.trials import STATUS_COMPLETE, RunTrials, full_budget_values, merge_repeated_configs
from studies.spec.direction import Direction

# The designed stage's config labels, in its folder and tables.
BASELINE_LABEL = "baseline"
LOO_PREFIX = "without:"


def active_params(params: list[Any], values: dict[str, Any]) -> dict[str, Any]:
    """Keep the parameters that are sampled under these values (``when`` rules)."""
    out: dict[str, Any] = {}
    for p in params:
        if p.name in values and values[p.name] is not None and values[p.name] == values[p.name] and p.active(out):
            out[p.name] = values[p.name]
    return out


def _rank_value(row: pd.Series, metric: str) -> float:
    """A trial's standing: its value at the full budget (what Optuna holds)
    when it got there, else its best epoch (only ranks unfinished trials)."""
    return row[f"last_{metric}"] if row["status"] == STATUS_COMPLETE else row[f"best_{metric}"]


def plan_designed(run: RunTrials, *, params: list[Any], metric: str, mode: str, baseline: dict[str, Any],
                  factors: list[str], top_k: int, confirm_seeds: int, loo_seeds: int,
                  sweep: list[str] | None = None) -> dict[str, Any]:
    """The designed stage's configs, each re-run at the full budget over seeds.

    Confirmation (``confirm_seeds`` > 0): the top-k distinct configs (complete
    trials first, by their full-budget value) and the baseline, i.e. the best
    config with every baseline value put in. Leave-one-out (``loo_seeds`` > 0):
    the best config with one factor at a time set to its baseline value.
    ``sweep``: categorical factors whose every other choice is also tried from
    the best config (one variant per choice, same seeds), so that the designed
    stage compares all their levels at the full budget, not only the baseline.
    A config asked for twice runs once, under its first label. ``params``:
    the search space in declaration order (anything with ``name`` and ``active``)."""
    confirm = confirm_seeds > 0
    df = run.trials.copy()
    df["_complete"] = df["status"] == STATUS_COMPLETE
    df["_value"] = [_rank_value(r, metric) for _, r in df.iterrows()]
    df = df.sort_values(["_complete", "_value"], ascending=[False, Direction(mode).ascending], na_position="last")
    top_k = top_k if confirm else 1
    tops: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _, row in df.iterrows():
        chosen = active_params(params, {p.name: row.get(p.name) for p in params})
        key = _key(chosen)
        if key in seen:
            continue
        seen.add(key)
        tops.append({"label": f"top{len(tops) + 1}", "params": chosen, "trial_id": row["trial_id"]})
        if len(tops) == top_k:
            break
    configs = [dict(c, roles=["confirm"] if confirm else []) for c in tops]
    skipped: dict[str, str] = {}
    if configs and confirm and baseline:
        base = active_params(params, {**configs[0]["params"], **baseline})
        configs.append({"label": BASELINE_LABEL, "params": base, "trial_id": None, "roles": ["confirm"]})
    if configs and loo_seeds > 0:
        configs[0]["roles"] = [*configs[0]["roles"], "loo_best"]
        configs += _leave_one_out_variants(configs[0]["params"], params, factors, baseline, skipped)
        configs += _sweep_variants(configs[0]["params"], params, sweep or [], baseline)
    out = []
    for c in _merge_identical(configs):
        seeds = max(confirm_seeds if "confirm" in c["roles"] else 0, loo_seeds if {"loo", "loo_best"} & set(c["roles"]) else 0)
        values = {k: (v.item() if hasattr(v, "item") else v) for k, v in c["params"].items()}
        out.append({**c, "params": values, "seeds": seeds})
    return {"configs": out, "loo_skipped": skipped, "confirm": confirm, "leave_one_out": loo_seeds > 0,
            "confirm_seeds": confirm_seeds, "loo_seeds": loo_seeds}


def _leave_one_out_variants(best: dict[str, Any], params: list[Any], factors: list[str], baseline: dict[str, Any],
                            skipped: dict[str, str]) -> list[dict[str, Any]]:
    """The best config with one factor at a time at its baseline; a factor with
    no variant gets its reason in ``skipped``."""
    variants = []
    for factor in factors:
        if factor not in baseline:
            skipped[factor] = "the spec names no baseline value for it"
        elif factor not in best:
            skipped[factor] = "not active in the best config"
        elif _same_value(best[factor], baseline[factor]):
            skipped[factor] = "the best config already has its baseline value"
        else:
            variant = active_params(params, {**best, factor: baseline[factor]})
            variants.append({"label": f"{LOO_PREFIX}{factor}", "params": variant, "trial_id": None,
                             "roles": ["loo"], "factor": factor})
    return variants


def _sweep_variants(best: dict[str, Any], params: list[Any], sweep: list[str],
                    baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """The best config with a swept factor at each of its other choices (the
    baseline's choice is the leave-one-out variant already)."""
    variants = []
    for p in params:
        if p.name not in sweep or p.name not in best or not getattr(p, "choices", ()):
            continue
        for choice in p.choices:
            if _same_value(choice, best[p.name]) or (p.name in baseline and _same_value(choice, baseline[p.name])):
                continue
            variant = active_params(params, {**best, p.name: choice})
            variants.append({"label": f"{LOO_PREFIX}{p.name}={choice}", "params": variant, "trial_id": None,
                             "roles": ["loo"], "factor": p.name})
    return variants


def _merge_identical(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per distinct config, every label (``aliases``), role and
    leave-one-out factor it answers to kept, in first-asked order."""
    merged: dict[str, dict[str, Any]] = {}
    for c in configs:
        key = _key(c["params"])
        if key in merged:
            merged[key]["aliases"].append(c["label"])
            merged[key]["roles"] += [r for r in c["roles"] if r not in merged[key]["roles"]]
            if "factor" in c:
                merged[key].setdefault("factors", []).append(c["factor"])
            continue
        merged[key] = {**c, "aliases": [], "factors": [c["factor"]] if "factor" in c else []}
        merged[key].pop("factor", None)
    return list(merged.values())


def _key(params: dict[str, Any]) -> str:
    return json.dumps({k: (round(float(v), 12) if isinstance(v, float) else v) for k, v in params.items()},
                      sort_keys=True, default=str)


def _same_value(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


def plan_front_confirmation(run: RunTrials, *, params: list[Any], metrics: list[str], modes: list[str],
                            baseline: dict[str, Any], max_epochs: int, top_k: int, seeds: int) -> dict[str, Any]:
    """A study with several objectives confirms its front: up to ``top_k`` distinct
    front configs at the full budget, in crowding-distance order (the two ends of
    the front first, then the most isolated members: spread along the front,
    not bunched at one end), and the baseline (``baseline``: every active
    parameter's baseline value, the search's trial 0), each over ``seeds`` seeds."""
    from studies.spec.pareto import nondominated_ranks, pareto_order

    # one row per distinct config at the mean of its repeats (trial_id: its first trial)
    _, values = merge_repeated_configs(run, full_budget_values(run, metrics, max_epochs), metrics)
    trials = run.trials.set_index("trial_id")
    configs: list[dict[str, Any]] = []
    seen: set[str] = set()
    if len(values):
        points = values[metrics].to_numpy(dtype=float)
        order, front = pareto_order(points, modes), nondominated_ranks(points, modes) == 0
        for i in order:
            if not front[i]:
                break
            row = trials.loc[values.iloc[i]["trial_id"]]
            chosen = active_params(params, {p.name: row.get(p.name) for p in params})
            key = _key(chosen)
            if key in seen:
                continue
            seen.add(key)
            configs.append({"label": f"front{len(configs) + 1}", "params": chosen, "trial_id": values.iloc[i]["trial_id"],
                            "roles": ["confirm"]})
            if len(configs) == top_k:
                break
    if configs:
        configs.append({"label": BASELINE_LABEL, "params": active_params(params, baseline), "trial_id": None,
                        "roles": ["confirm"]})
    out = []
    for c in _merge_identical(configs):
        values_ = {k: (v.item() if hasattr(v, "item") else v) for k, v in c["params"].items()}
        out.append({**c, "params": values_, "seeds": seeds})
    return {"configs": out, "loo_skipped": {}, "confirm": True, "leave_one_out": False, "front": True,
            "confirm_seeds": seeds, "loo_seeds": 0}
