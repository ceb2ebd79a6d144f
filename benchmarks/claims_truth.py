"""How true is the report's *answer*? Its claims (studies.report.claims.Claim),
scored one by one against the exact truth of objectives whose answer is known
(benchmarks/known_truth.py).

    python benchmarks/claims_truth.py [--seeds 10] [--trials 150] [--objectives flip_like crippled ...] [--jobs 2]

For each objective (flip_like, crippled, ramp_like, many_weak), searcher (the
platform's TPE, a TPE that exploits hard, random, and the platform's TPE on a
noise-free table) and seed: a Ray-free TPE + ASHA study
(``known_truth.simulate_study``), the report's analysis
(``studies.report.analysis.analyse``), a leave-one-out designed stage as
benchmarks/analysis_truth.py's ``one_run`` makes it (planned by
``studies.runs.designed.plan_designed``, 3 seeds), then the answer's claims
(``studies.report.answer.answer_claims``), each marked true or false by
``score_claims``:

- ``difference`` at ``modelled`` or ``designed: screening`` evidence, rung r:
  true iff the exact marginal of the value reported at epoch r
  (``known_truth.rung_objective``) of ``level`` minus that of ``reference``
  has the claimed direction; under ``condition`` ({other: its level}) the
  conditional marginals (``known_truth.conditional_marginals``). A claimed
  difference where the truth has none (a null factor) is false;
- ``difference`` at ``designed: leave-one-out``: true iff the exact
  full-budget f of the config holding ``level`` minus that of the config
  holding ``reference`` has the claimed direction (the configs: the claim's
  ``extra["best"]`` and ``extra["variant"]``);
- ``ranking``: true iff ``factor`` is the first of
  ``known_truth.true_importance_order`` (full budget);
- ``declined``, ``no_difference``, ``no_ranking``, ``note``, ``best``: never
  false by construction; declines are counted, and whether each says why
  (non-empty text).

Claims the truth cannot be computed for (a confirmation difference, whose
claim carries no config dicts; a level the objective has no key for) are
``correct = None`` with the reason, never counted as true.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import known_truth as kt  # noqa: E402

from studies.report.claims import Claim  # noqa: E402
from studies.spec.levels import declared_levels, level_name

MAX_EPOCHS, GRACE, RF = 18, 2, 3
SCORED_KINDS = ("difference", "ranking")
RUNG_EVIDENCE = ("modelled", "designed: screening")
TIE = 1e-12     # a true difference below this (relative to the objective's scale) is none

# (factor, rung, condition) -> {report label: exact value}; condition: None or (other factor, its report label)
RungTruth = Callable[[str, int, "tuple[str, str] | None"], dict[str, float]]


# ---------------------------------------------------------------- labels and truth

def level_keys(obj: kt.Objective, factor: str) -> dict[str, kt.Level]:
    """The report's label of each level of ``factor`` -> known_truth's level key:
    the labels ``declared_levels`` gives the modelled tables (the same bins, in
    order), and ``known_truth.report_label``'s spelling, and a choice's own."""
    f = obj.by_name[factor]
    out: dict[str, kt.Level] = {}
    for (label, _), key in zip(declared_levels(f, obj.bins.get(factor)), kt.levels(obj, factor)):
        out[label] = key
        out[kt.report_label(obj, factor, key)] = key
    return out


def _key(obj: kt.Objective, factor: str, label: Any) -> kt.Level:
    """known_truth's key of a report label (a trailing " (ref)" ignored); a
    numeric interval "[a, b)" that is not a bin is parsed as (a, b)."""
    text = str(label).removesuffix(" (ref)").strip()
    keys = level_keys(obj, factor)
    if text in keys:
        return keys[text]
    if obj.by_name[factor].type == "categorical":
        for c in obj.by_name[factor].choices:
            if level_name(c) == text or (_number(text) is not None and _number(level_name(c)) == _number(text)):
                return level_name(c)
    m = re.fullmatch(r"[\[(]\s*([^,]+),\s*([^\])]+)[\])]", text)
    if m and _number(m.group(1)) is not None and _number(m.group(2)) is not None:
        return (float(m.group(1)), float(m.group(2)))
    raise KeyError(f"{obj.name}: no level {label!r} of {factor} (have {list(keys)})")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def exact_rung_truth(obj: kt.Objective, *, max_epochs: int = MAX_EPOCHS) -> RungTruth:
    """A ``rung_truth_fn`` from the exact truth: the marginals (or, under a
    condition, the conditional marginals) of the value reported at the rung,
    keyed by every label ``level_keys`` knows. Cached per rung."""
    at: dict[int, kt.Objective] = {}
    memo: dict[tuple, dict[str, float]] = {}

    def fn(factor: str, rung: int, condition: tuple[str, str] | None = None) -> dict[str, float]:
        key = (factor, rung, condition)
        if key not in memo:
            o = at.setdefault(rung, kt.rung_objective(obj, rung, max_epochs=max_epochs))
            if condition is None:
                by_key = kt.factor_marginals(o, factor)
            else:
                other, label = condition
                by_key = kt.conditional_marginals(o, factor, other, _key(obj, other, label))
            memo[key] = {label: by_key[k] for label, k in level_keys(obj, factor).items()}
        return memo[key]

    return fn


def _sign(x: float, scale: float) -> int:
    return 0 if abs(x) <= TIE * max(1.0, scale) else (1 if x > 0 else -1)


def _claimed_sign(direction: str, mode: str) -> int:
    """The sign of level minus reference that ``direction`` asserts."""
    better = -1 if mode == "min" else 1
    return better if direction == "better" else -better


def _closest(obj: kt.Objective, factor: str, label: str, candidates: list[Mapping[str, Any]]) -> int | None:
    """Which config holds ``label`` for ``factor`` (a choice by name; a number by
    the closest value on the factor's declared scale)."""
    values = [c.get(factor) for c in candidates]
    names = [None if v is None else level_name(v) for v in values]
    if label in names and names.count(label) == 1:
        return names.index(label)
    x = _number(label)
    nums = [_number(str(v)) if v is not None else None for v in values]
    if x is None or any(n is None for n in nums):
        return None
    f = obj.by_name.get(factor)
    scale = (lambda v: math.log(v)) if f is not None and f.log and x > 0 and all(n > 0 for n in nums) else (lambda v: v)
    dist = [abs(scale(n) - scale(x)) for n in nums]
    return int(np.argmin(dist)) if dist.count(min(dist)) == 1 else None


def score_claims(obj: kt.Objective, claims: Iterable[Claim], *, rung_truth_fn: RungTruth | None = None,
                 full_budget_f: Callable[[Mapping[str, Any]], float] | None = None) -> list[dict[str, Any]]:
    """One row per claim: kind, evidence, factor, level, reference, direction,
    condition, rung, ``truth`` (the true difference level minus reference, or
    the true first factor), ``correct`` (True / False; None where the claim
    asserts nothing that can be false, or the truth cannot be computed:
    ``why`` says which), ``declined`` and ``has_reason`` (a decline with
    non-empty text).

    ``rung_truth_fn(factor, rung, condition)``: {report label: exact value at
    the rung} (``condition``: None or (other factor, its label));
    default ``exact_rung_truth(obj)``. ``full_budget_f(config)``: the exact
    full-budget value of a config; default ``obj.f``."""
    rung_truth_fn = rung_truth_fn or exact_rung_truth(obj)
    full_budget_f = full_budget_f or obj.f
    dominant: list[str] = []
    rows = []
    for c in claims:
        row: dict[str, Any] = {
            "kind": c.kind, "evidence": c.evidence, "factor": c.factor, "level": c.level, "reference": c.reference,
            "direction": c.direction, "condition": dict(c.condition), "rung": c.rung, "mark": c.mark,
            "estimate": c.estimate, "truth": math.nan, "correct": None, "why": "",
            "declined": c.kind == "declined", "has_reason": c.kind == "declined" and bool(c.text.strip()),
            "text": c.text,
        }
        if c.kind == "ranking":
            dominant = dominant or kt.true_importance_order(obj)
            row["truth"] = dominant[0]
            row["correct"] = c.factor == dominant[0]
            row["why"] = f"true order {dominant[:3]}"
        elif c.kind == "difference" and c.extra.get("metric"):
            row["why"] = f"a claim on a secondary metric ({c.extra['metric']}), which the objective has no truth for"
        elif c.kind == "difference":
            _score_difference(obj, c, row, rung_truth_fn, full_budget_f)
        else:
            row["why"] = "asserts nothing that can be false"
        rows.append(row)
    return rows


def _score_difference(obj: kt.Objective, c: Claim, row: dict[str, Any], rung_truth_fn: RungTruth,
                      full_budget_f: Callable[[Mapping[str, Any]], float]) -> None:
    claimed = _claimed_sign(c.direction or "", obj.mode)
    if c.evidence in RUNG_EVIDENCE:
        if c.factor is None or c.rung is None or c.level is None or c.reference is None:
            row["why"] = "no factor, rung, level or reference to check"
            return
        if len(c.condition) > 1:
            row["why"] = f"conditions on {len(c.condition)} factors; the truth takes one"
            return
        condition = next(iter(c.condition.items())) if c.condition else None
        try:
            truth = rung_truth_fn(c.factor, int(c.rung), condition)
            level = _label_in(obj, c.factor, c.level, truth)
            ref = _label_in(obj, c.factor, c.reference, truth)
        except KeyError as e:
            row["why"] = f"no truth: {e}"
            return
        delta = truth[level] - truth[ref]
        scale = max(abs(v) for v in truth.values())
        where = f" where {condition[0]} in {condition[1]}" if condition else ""
        row["why"] = f"true marginals at epoch {c.rung}{where}: {level} {truth[level]:.4g}, {ref} {truth[ref]:.4g}"
    elif c.evidence == "designed: leave-one-out":
        best, variant = c.extra.get("best"), c.extra.get("variant")
        if not isinstance(best, Mapping) or not isinstance(variant, Mapping) or c.factor is None:
            row["why"] = "no extra['best'] and extra['variant'] configs"
            return
        which = _closest(obj, c.factor, str(c.level), [best, variant])
        if which is None:   # the claim's level names neither config's value: read it as answer.py writes it
            which = 0
            row["why"] = "level matches neither config; read as the best config's setting. "
        at_level, at_ref = (best, variant) if which == 0 else (variant, best)
        try:
            delta = full_budget_f(at_level) - full_budget_f(at_ref)
        except (KeyError, ValueError, TypeError) as e:
            row["why"] = f"no truth: the configs cannot be evaluated ({e})"
            return
        scale = abs(full_budget_f(best))
        row["why"] += f"exact full-budget f: {'best' if which == 0 else 'variant'} (level) minus the other {delta:+.4g}"
    else:
        row["why"] = f"{c.evidence} differences are not scored (the claim carries no configs to evaluate)"
        return
    row["truth"] = delta
    true_sign = _sign(delta, scale)
    row["correct"] = true_sign == claimed
    if true_sign == 0:
        row["why"] += "; the truth has no difference"


def _label_in(obj: kt.Objective, factor: str, label: str, truth: Mapping[str, float]) -> str:
    text = str(label).removesuffix(" (ref)").strip()
    if text in truth:
        return text
    key = _key(obj, factor, text)
    for lab, k in level_keys(obj, factor).items():
        if k == key and lab in truth:
            return lab
    raise KeyError(f"{factor}: level {label!r} not in the truth's levels {list(truth)}")


# ---------------------------------------------------------------- the modelled tables' marks


def wrong_sign_marks(obj: kt.Objective, an: Any, rung_truth_fn: RungTruth) -> dict[str, int]:
    """Marked rows (``sig``) of the modelled tables and of their interaction
    tables, and how many of them have the sign opposite to the truth at the
    table's rung (a marked difference where the truth has none counts as
    wrong too: ``null``)."""
    out = {"marks": 0, "wrong": 0, "null": 0, "cond_marks": 0, "cond_wrong": 0, "cond_null": 0}
    m = an.modelled
    for t in m.tables:
        rows = t.table[t.table["sig"].fillna("") != ""]
        if rows.empty:
            continue
        truth = rung_truth_fn(t.factor, t.rung, None)
        scale = max(abs(v) for v in truth.values())
        for _, r in rows.iterrows():
            d = truth[_label_in(obj, t.factor, r["level"], truth)] - truth[_label_in(obj, t.factor, t.reference, truth)]
            s = _sign(d, scale)
            out["marks"] += 1
            out["wrong"] += int(s != 0 and s != np.sign(r["delta"]))
            out["null"] += int(s == 0)
    for inter in getattr(m, "interactions", []):
        rows = inter.table[inter.table["sig"].fillna("") != ""]
        for _, r in rows.iterrows():
            truth = rung_truth_fn(inter.factor, m.rung, (inter.other, str(r["given"])))
            scale = max(abs(v) for v in truth.values())
            d = truth[_label_in(obj, inter.factor, r["level"], truth)] - truth[_label_in(obj, inter.factor, inter.reference, truth)]
            s = _sign(d, scale)
            out["cond_marks"] += 1
            out["cond_wrong"] += int(s != 0 and s != np.sign(r["delta"]))
            out["cond_null"] += int(s == 0)
    return out


# ---------------------------------------------------------------- one study, end to end

SEARCHERS = {   # name -> (sampler, noise-free)
    "tpe": ("tpe", False),
    "tpe_greedy": ("tpe_greedy", False),
    "random": ("random", False),
    "tpe, noise 0": ("tpe", True),
}


def one_run(name: str, searcher: str, seed: int, n_trials: int) -> tuple[list[dict], dict]:
    """Simulate, analyse, run the leave-one-out, answer, score. Returns the
    scored claims and a summary of the run."""
    from studies.report.analysis import analyse
    from studies.report.answer import answer_claims
    from studies.report.confirmation import leave_one_out
    from studies.runs.designed import plan_designed

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    obj = {**kt.OBJECTIVES, **kt.HARD_OBJECTIVES}[name]()
    sampler, noise_free = SEARCHERS[searcher]
    if noise_free:
        obj.noise_sd = 0.0
    started = time.perf_counter()
    run = kt.simulate_study(obj, sampler=sampler, seed=seed, n_trials=n_trials, max_epochs=MAX_EPOCHS,
                            grace_period=GRACE, reduction_factor=RF)
    an = analyse(run, obj.factors, metric=obj.metric, mode=obj.mode, baseline=obj.baseline, bins=obj.bins,
                 max_epochs=MAX_EPOCHS, grace_period=GRACE, reduction_factor=RF, seed=seed)
    plan = plan_designed(run, params=obj.factors, metric=obj.metric, mode=obj.mode, baseline=obj.baseline,
                         factors=[f.name for f in obj.factors], top_k=1, confirm_seeds=0, loo_seeds=3)
    seeds = [1000 + seed * 10 + i for i in range(3)]
    runs = kt.simulate_designed(obj, [c["params"] for c in plan["configs"]], seeds,
                                labels=[c["label"] for c in plan["configs"]])
    loo = leave_one_out({**plan, "max_epochs": MAX_EPOCHS}, runs, metric=obj.metric, mode=obj.mode)
    claims = answer_claims(run, an, metric=obj.metric, mode=obj.mode, scale="interval", confirmation=None, loo=loo,
                           max_epochs=MAX_EPOCHS)
    truth_fn = exact_rung_truth(obj)
    rows = score_claims(obj, claims, rung_truth_fn=truth_fn)
    ctx = {"objective": name, "searcher": searcher, "seed": seed}
    marks = wrong_sign_marks(obj, an, truth_fn)
    summary = {**ctx, **marks, "r2": an.modelled.fit_r2, "gate": bool(getattr(an.modelled, "gate", "")),
               "seconds": time.perf_counter() - started, "dominant": kt.true_importance_order(obj)[0]}
    return [{**ctx, **r} for r in rows], summary


def _job(args: tuple[str, str, int, int]) -> tuple[list[dict], dict]:
    return one_run(*args)


def summarise(df: pd.DataFrame, sm: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (objective, searcher), s in sm.groupby(["objective", "searcher"], sort=False):
        g = df[(df["objective"] == objective) & (df["searcher"] == searcher)] if not df.empty else df
        scored = g[g["correct"].notna()] if not g.empty else g
        false = scored[scored["correct"] == False] if not scored.empty else scored  # noqa: E712
        diff = g[g["kind"] == "difference"] if not g.empty else g
        rank = g[g["kind"] == "ranking"] if not g.empty else g
        dec = g[g["declined"]] if not g.empty else g
        n_runs = len(s)
        bad_runs = false["seed"].nunique() if not false.empty else 0

        def share(part: pd.DataFrame, evidence: tuple[str, ...]) -> str:
            p = part[part["evidence"].isin(evidence) & part["correct"].notna()] if not part.empty else part
            return f"{int((p['correct'] == False).sum())}/{len(p)}" if len(p) else "0/0"  # noqa: E712

        out.append({
            "objective": objective, "searcher": searcher,
            "answers with a false claim": f"{bad_runs}/{n_runs}",
            "false / scored claims": f"{len(false)}/{len(scored)}",
            "false modelled diffs": share(diff[diff["condition"].map(len) == 0] if not diff.empty else diff, RUNG_EVIDENCE),
            "false conditional diffs": share(diff[diff["condition"].map(len) > 0] if not diff.empty else diff, RUNG_EVIDENCE),
            "false LOO diffs": share(diff, ("designed: leave-one-out",)),
            "unscored": int(g["correct"].isna().sum() - g["kind"].isin(["declined", "no_difference", "no_ranking",
                                                                            "note", "best"]).sum()) if not g.empty else 0,
            "wrong-sign marks (modelled)": f"{int(s['wrong'].sum())}/{int(s['marks'].sum())}",
            "null marks": int(s["null"].sum()),
            "wrong-sign marks (interactions)": f"{int(s['cond_wrong'].sum())}/{int(s['cond_marks'].sum())}",
            "dominant first (ranking claimed)": f"{int((rank['correct'] == True).sum())}/{len(rank)}",  # noqa: E712
            "declines with a reason": f"{int(dec['has_reason'].sum())}/{len(dec)}",
            "gated runs": f"{int(s['gate'].sum())}/{n_runs}",
            "OOB R2 median [min, max]": f"{s['r2'].median():.2f} [{s['r2'].min():.2f}, {s['r2'].max():.2f}]",
        })
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=150)
    ap.add_argument("--objectives", nargs="+", default=["flip_like", "crippled", "ramp_like", "many_weak"])
    ap.add_argument("--searchers", nargs="+", default=list(SEARCHERS), choices=list(SEARCHERS))
    ap.add_argument("--jobs", type=int, default=1, help="processes (each run is single-threaded)")
    ap.add_argument("--false", action="store_true", help="also print every false claim")
    args = ap.parse_args()
    jobs = [(o, s, seed, args.trials) for o in args.objectives for s in args.searchers for seed in range(args.seeds)]
    results = []
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as pool:
            for job, res in zip(jobs, pool.map(_job, jobs)):
                results.append(res)
                print(f"{job[0]:10s} {job[1]:14s} seed {job[2]}: {res[1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    else:
        for job in jobs:
            results.append(_job(job))
            print(f"{job[0]:10s} {job[1]:14s} seed {job[2]}: {results[-1][1]['seconds']:.1f} s", file=sys.stderr,
                  flush=True)
    df = pd.DataFrame([r for rows, _ in results for r in rows])
    sm = pd.DataFrame([s for _, s in results])
    print(f"\n{args.seeds} seeds, {args.trials} trials, ASHA grace {GRACE} / rf {RF} / max {MAX_EPOCHS}; leave-one-out "
          "over 3 seeds from the best config; every claim of the answer scored against the exact truth\n")
    print(summarise(df, sm).to_markdown(index=False))
    if args.false and not df.empty:
        bad = df[df["correct"] == False]  # noqa: E712
        print("\nFalse claims\n")
        print(bad[["objective", "searcher", "seed", "evidence", "factor", "level", "reference", "direction", "condition",
                   "rung", "truth", "why"]].to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
