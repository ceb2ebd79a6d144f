"""How true is each kind of evidence? Observed vs modelled vs designed on
objectives whose answer is known exactly (benchmarks/known_truth.py).

    python benchmarks/analysis_truth.py [--seeds 5] [--trials 180] [--startup N ...] [--noise SD]

For each objective, searcher and seed: a Ray-free TPE (or random) + ASHA
study of the objective (``known_truth.simulate_study``), analysed by the
report's own code (``studies.report.analysis.analyse``), and a leave-one-out
designed stage planned by ``studies.runs.designed.plan_designed`` and re-run over
3 seeds (``known_truth.simulate_designed``). Per kind of evidence:

- level order: Spearman correlation of the level values with the truth, for
  every factor whose true spread is >= 20% of the largest;
- spread ratio: estimated spread (max - min over levels) / true spread, same
  factors ("within 30%": the share of (factor, seed) cases in [0.7, 1.3]);
- null flags: share of (null factor, seed) cases with any level marked;
- wrong-sign flags: marked differences whose sign is opposite to the truth;
- importance: Spearman of the table's ranking (modelled main-effect
  variance) and of fANOVA's with the true main-effect variances, and how
  often each puts the dominant factor first.

And a reference for what the trials can tell: "oracle bin means", each
level's mean over its own trials at the rung after every other factor's
effect was removed exactly (the objective is known), so that only the noise
and where in its bin the searcher put each trial remain. An estimator that
knows nothing of the objective can only beat it by borrowing strength across
levels (the modelled tables' smooth curves do, for a numeric factor).

The truth for a search-phase table is the marginal of the value *reported at
that table's rung* (Monte-Carlo over the declared space, 100k configs per
level); the designed evidence is compared with the exact full-budget truth.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import known_truth as kt  # noqa: E402

from studies.report.ablation import values_at_epoch  # noqa: E402
from studies.report.analysis import analyse, configs_at  # noqa: E402
from studies.report.confirmation import leave_one_out  # noqa: E402
from studies.report.modelled import _space_for_level
from studies.report.space import sample_space  # noqa: E402
from studies.runs.designed import plan_designed  # noqa: E402
from studies.spec.levels import declared_levels
from studies.spec.study import default_startup  # noqa: E402

MAX_EPOCHS, GRACE, RF = 18, 2, 3


def rung_mean(obj: kt.Objective, configs: pd.DataFrame, rung: int) -> np.ndarray:
    """The noise-free mean of the value reported at epoch ``rung``, per config."""
    values = {c: configs[c].to_numpy() for c in configs.columns}
    decay = obj.decay(values) if obj.decay else 0.5
    return obj.evaluate(values) + decay * (1 / rung - 1 / MAX_EPOCHS)


def rung_truth(obj: kt.Objective, factor: str, rung: int, n: int = 100_000) -> np.ndarray:
    """E[value reported at epoch ``rung`` | level], per declared level of ``factor``."""
    f = obj.by_name[factor]
    return np.array([float(np.mean(rung_mean(obj, _space_for_level(obj.factors, f, how, n, 123), rung)))
                     for _, how in declared_levels(f, obj.bins.get(factor))])


def oracle_levels(obj: kt.Objective, run, factor: str, rung: int, n_space: int = 400) -> np.ndarray:
    """Per declared level of ``factor``: the mean over the level's trials at the rung of
    ``y_i - g(x_i) + E[g | X_factor = x_factor,i]`` (g: the noise-free rung mean, the
    expectation over the declared space): every other factor's effect removed exactly,
    the trial's own noise and its place inside the level kept. NaN for an empty level."""
    f = obj.by_name[factor]
    values = values_at_epoch(run, obj.metric, rung)
    configs = configs_at(run, values, [g.name for g in obj.factors])
    expected = {}   # E[g | X_factor = v] per distinct value; its dependants drawn after it, as the space does
    for v in configs[factor].unique():
        space = sample_space(obj.factors, n_space, np.random.default_rng(7), fixed={factor: v})
        expected[kt.level_name(v)] = float(np.mean(rung_mean(obj, space, rung)))
    own = np.array([expected[kt.level_name(v)] for v in configs[factor]])
    residual = values.to_numpy(float) - rung_mean(obj, configs, rung) + own
    out = []
    for _, how in declared_levels(f, obj.bins.get(factor)):
        x = configs[factor]
        if "fixed" in how:
            member = np.array([kt.level_name(v) == kt.level_name(how["fixed"]) for v in x])
        else:
            lo, hi = how["within"]
            xf = x.to_numpy(float)
            member = (xf >= lo) & ((xf < hi) | (hi >= f.high))
        out.append(residual[member].mean() if member.any() else np.nan)
    return np.array(out)


def _level_values(table: pd.DataFrame, column: str, n_levels: int) -> np.ndarray | None:
    """A table's values in declared-level order (observed tables may add '(not sampled)')."""
    rows = table[~table["level"].str.startswith(("(not sampled)", "out of bins"))]
    return rows[column].to_numpy(dtype=float) if len(rows) == n_levels else None


def _truth_delta_signs(truth: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    rows = table[~table["level"].str.startswith(("(not sampled)", "out of bins"))].reset_index(drop=True)
    ref = int(np.flatnonzero(rows["level"].str.endswith("(ref)"))[0])
    return np.sign(np.round(truth - truth[ref], 12))


def _score_tables(kind: str, tables: list, value_col: str, obj, truths, strong, nulls, rows: list, ctx: dict) -> None:
    for t in tables:
        truth = truths.get((t.factor, t.rung))
        if truth is None:
            truth = truths[(t.factor, t.rung)] = rung_truth(obj, t.factor, t.rung)
        est = _level_values(t.table, value_col, len(truth))
        if est is None:
            continue
        sig = t.table[~t.table["level"].str.startswith(("(not sampled)", "out of bins"))]["sig"].fillna("").to_numpy() != ""
        signs = _truth_delta_signs(truth, t.table)
        delta_col = "delta" if "delta" in t.table.columns else "delta_vs_ref"
        deltas = t.table[~t.table["level"].str.startswith(("(not sampled)", "out of bins"))][delta_col].to_numpy(dtype=float)
        wrong = int(np.sum(sig & (signs != 0) & (np.sign(deltas) != signs)))
        row = {**ctx, "kind": kind, "factor": t.factor, "null": t.factor in nulls, "strong": t.factor in strong,
               "flagged": bool(sig.any()), "wrong_sign": wrong, "rung": t.rung}
        if t.factor in strong and np.ptp(truth) > 0 and np.isfinite(est).all():
            row["rho"] = stats.spearmanr(est, truth)[0] if np.ptp(est) > 0 else 0.0
            row["spread_ratio"] = np.ptp(est) / np.ptp(truth)
        rows.append(row)


def one_run(obj: kt.Objective, sampler: str, seed: int, n_trials: int, startup: int, truths: dict) -> tuple[list, dict]:
    run = kt.simulate_study(obj, sampler=sampler, seed=seed, n_trials=n_trials, max_epochs=MAX_EPOCHS,
                            grace_period=GRACE, reduction_factor=RF, n_startup_trials=startup)
    started = time.perf_counter()
    an = analyse(run, obj.factors, metric=obj.metric, mode=obj.mode, baseline=obj.baseline, bins=obj.bins,
                 max_epochs=MAX_EPOCHS, grace_period=GRACE, reduction_factor=RF, seed=seed)
    seconds = time.perf_counter() - started
    spread = {f.name: kt.true_spread(obj, f.name) for f in obj.factors}
    strong = {f for f, s in spread.items() if s >= 0.2 * max(spread.values())}
    nulls = set(obj.null_factors)
    ctx = {"objective": obj.name, "searcher": sampler if sampler == "random" else f"tpe ({startup} startup)", "seed": seed}
    rows: list = []
    _score_tables("observed", an.observed.tables, "mean", obj, truths, strong, nulls, rows, ctx)
    _score_tables("modelled", an.modelled.tables, "marginal", obj, truths, strong, nulls, rows, ctx)
    for factor in sorted(strong):
        truth = truths.get((factor, an.rung))
        if truth is None:
            truth = truths[(factor, an.rung)] = rung_truth(obj, factor, an.rung)
        est = oracle_levels(obj, run, factor, an.rung)
        if np.isfinite(est).all():
            rows.append({**ctx, "kind": "oracle bin means", "factor": factor, "null": False, "strong": True,
                         "flagged": False, "wrong_sign": 0, "rung": an.rung,
                         "rho": stats.spearmanr(est, truth)[0] if np.ptp(est) > 0 else 0.0,
                         "spread_ratio": np.ptp(est) / np.ptp(truth)})

    # Designed: leave-one-out from the best config, 3 seeds, against the exact full-budget truth.
    plan = plan_designed(run, params=obj.factors, metric=obj.metric, mode=obj.mode, baseline=obj.baseline,
                         factors=[f.name for f in obj.factors], top_k=1, confirm_seeds=0, loo_seeds=3)
    seeds = [1000 + seed * 10 + i for i in range(3)]
    runs = kt.simulate_designed(obj, [c["params"] for c in plan["configs"]], seeds,
                                labels=[c["label"] for c in plan["configs"]])
    loo = leave_one_out({**plan, "max_epochs": MAX_EPOCHS}, runs, metric=obj.metric, mode=obj.mode)
    best = next(c for c in plan["configs"] if "loo_best" in c["roles"])
    for _, r in (loo.table if loo.table is not None else pd.DataFrame()).iterrows():
        variant = next(c for c in plan["configs"] if r["factor"] in c.get("factors", []))
        true_delta = obj.f(variant["params"]) - obj.f(best["params"])
        rows.append({**ctx, "kind": "designed", "factor": r["factor"], "null": r["factor"] in nulls,
                     "strong": r["factor"] in strong, "flagged": r["sig"] != "",
                     "wrong_sign": int(r["sig"] != "" and true_delta != 0 and np.sign(r["delta"]) != np.sign(true_delta)),
                     "loo_error": abs(r["delta"] - true_delta), "loo_true": true_delta, "rung": MAX_EPOCHS})

    true_var = kt.main_effect_variance(obj)
    dominant = kt.true_importance_order(obj)[0]

    def rho_and_first(column: str) -> tuple[float, bool]:
        imp = an.importance.dropna(subset=[column]).sort_values(column, ascending=False)
        order = [p for p in imp["parameter"] if p in true_var]
        rho = stats.spearmanr([imp.set_index("parameter").loc[p, column] for p in order], [true_var[p] for p in order])[0]
        return rho, bool(order and order[0] == dominant)

    imp_rho, fanova_first = rho_and_first("fanova_variance")
    modelled_rho, modelled_first = rho_and_first("modelled_variance")
    summary = {**ctx, "report_s": seconds, "modelled_rung": an.rung, "imp_rho": imp_rho, "fanova_first": fanova_first,
               "modelled_rho": modelled_rho, "dominant_first": modelled_first}
    ped = an.importance.dropna(subset=["ped_anova"]).set_index("parameter")["ped_anova"]
    summary["ped_rho"] = stats.spearmanr([ped[p] for p in ped.index], [true_var[p] for p in ped.index])[0]
    return rows, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=180)
    ap.add_argument("--startup", type=int, nargs="+", default=None,
                    help="TPE n_startup_trials values to compare (default: the platform's default, and 10 = Optuna's)")
    ap.add_argument("--noise", type=float, default=None,
                    help="sd of one reported value instead of the objectives' own (0: one value per config, "
                         "as a tabular benchmark has)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows, summaries = [], []
    for make in kt.OBJECTIVES.values():
        obj = make()
        if args.noise is not None:
            obj.noise_sd = args.noise
        truths: dict = {}
        startups = args.startup or sorted({default_startup(args.trials), 10}, reverse=True)
        for sampler, startup in [("tpe", s) for s in startups] + [("random", 0)]:
            for seed in range(args.seeds):
                r, s = one_run(obj, sampler, seed, args.trials, startup, truths)
                rows += r
                summaries.append(s)
                print(f"{obj.name:10s} {s['searcher']:18s} seed {seed}: report {s['report_s']:.1f} s, "
                      f"rung {s['modelled_rung']}, dominant first: {s['dominant_first']}", file=sys.stderr, flush=True)
    df, sm = pd.DataFrame(rows), pd.DataFrame(summaries)
    out = []
    for (objective, searcher, kind), g in df.groupby(["objective", "searcher", "kind"], sort=False):
        strong = g[g["strong"]]
        imp = sm[(sm["objective"] == objective) & (sm["searcher"] == searcher)]
        line = {
            "objective": objective, "searcher": searcher, "evidence": kind,
            "level-order rho (strong)": strong["rho"].mean() if "rho" in strong and strong["rho"].notna().any() else np.nan,
            "min rho": strong["rho"].min() if "rho" in strong and strong["rho"].notna().any() else np.nan,
            "spread ratio (strong)": strong["spread_ratio"].mean() if "spread_ratio" in strong and strong["spread_ratio"].notna().any() else np.nan,
            "within 30%": (strong["spread_ratio"].between(0.7, 1.3).mean() if "spread_ratio" in strong and strong["spread_ratio"].notna().any() else np.nan),
            "null flags": f"{int(g[g['null']]['flagged'].sum())}/{int(g['null'].sum())}" if g["null"].any() else "",
            "wrong-sign flags": int(g["wrong_sign"].sum()),
            "LOO abs error": g["loo_error"].mean() if "loo_error" in g and g["loo_error"].notna().any() else np.nan,
        }
        if kind == "modelled":
            line["importance rho"] = imp["modelled_rho"].mean()
            line["dominant first"] = f"{int(imp['dominant_first'].sum())}/{len(imp)}"
            line["fANOVA rho"] = imp["imp_rho"].mean()
            line["fANOVA first"] = f"{int(imp['fanova_first'].sum())}/{len(imp)}"
            line["PED-ANOVA rho"] = imp["ped_rho"].mean()
        out.append(line)
    table = pd.DataFrame(out)
    print(f"\n{args.seeds} seeds, {args.trials} trials, ASHA grace {GRACE} / rf {RF} / max {MAX_EPOCHS}; "
          f"report time per run: median {sm['report_s'].median():.1f} s\n")
    print(table.to_markdown(index=False, floatfmt=".2f"))
    strong = df[df["strong"] & df["kind"].isin(["modelled", "oracle bin means"]) & df["rho"].notna()]
    per_factor = strong.groupby(["objective", "searcher", "factor", "kind"], sort=False).agg(
        rho=("rho", "mean"), min_rho=("rho", "min"), spread_ratio=("spread_ratio", "mean"),
        within_30=("spread_ratio", lambda r: r.between(0.7, 1.3).mean())).reset_index()
    print("\nPer strong factor: the modelled tables against the oracle bin means\n")
    print(per_factor.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
