"""The designed stage's tables, from its re-runs at the full budget over seeds.

Confirmation: top-k configs and the baseline, mean ± std per config, each
against the baseline by a paired t-test over seeds (same seeds, same data
split), Holm-corrected. Leave-one-out: the best config against itself with
one factor at its baseline, paired the same way: the table papers print.

Secondary metrics (the spec's ``report:``, components of the study metric,
say) get their own columns in both tables: per metric its mean and its paired
difference, Holm-corrected within that metric's column only."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from studies.report.ablation import holm
from studies.runs.designed import BASELINE_LABEL
from studies.runs.designed_record import complete_runs, read_plan
from studies.runs.run_folder import RunFolder
from studies.spec.direction import Direction
from studies.spec.study import Secondary, report_of_run


@dataclass
class ConfirmationResult:
    runs: pd.DataFrame            # config, seed, metric, epochs
    summary: pd.DataFrame | None  # one row per config
    caption: str
    sentence: str
    secondary: list[Secondary] = field(default_factory=list)  # the report: metrics with columns in summary
    missing: list[str] = field(default_factory=list)          # one line per report: metric the trials lack


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def paired_comparison(x: pd.Series, base: pd.Series, mode: str) -> dict[str, Any]:
    """x against base over the seeds both ran (same seed, same data split):
    mean paired difference with a 95% t-interval, paired t-test p, and the
    seeds where x was better."""
    common = x.index.intersection(base.index)
    out: dict[str, Any] = {"n": len(common), "delta": math.nan, "delta_lo": math.nan, "delta_hi": math.nan, "p": math.nan, "wins": ""}
    if not len(common):
        return out
    diff = (x.loc[common] - base.loc[common]).to_numpy(dtype=float)
    better = np.array([Direction(mode).improves(d) for d in diff])  # per seed
    out.update(delta=float(diff.mean()), wins=f"{int(better.sum())}/{len(common)}")
    if len(common) >= 2:
        if np.any(diff != diff[0]):
            out["p"] = float(stats.ttest_rel(x.loc[common], base.loc[common]).pvalue)
            half = float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff)))
            out["delta_lo"], out["delta_hi"] = out["delta"] - half, out["delta"] + half
        else:  # the same difference in every seed: no spread to test against; one within float rounding is none
            tie = abs(diff[0]) <= 1e-9 * max(1.0, float(np.abs(base.loc[common]).max()))
            out["p"] = 1.0 if tie else 0.0
            out["delta_lo"] = out["delta_hi"] = out["delta"]
    return out


@dataclass
class LeaveOneOutResult:
    table: pd.DataFrame | None    # one row per factor
    caption: str
    skipped: dict                 # factor -> why it has no row
    best_params: dict
    secondary: list[Secondary] = field(default_factory=list)  # the report: metrics with columns in table
    missing: list[str] = field(default_factory=list)          # one line per report: metric the trials lack


def secondary_of_run(run_dir: Path, mode: str) -> list[Secondary]:
    """The ``report:`` metrics of a run, read from its spec copy as the run had it
    (smoke block, overrides); none for a folder without a spec copy or run.json."""
    folder = RunFolder(run_dir)
    if not folder.spec_copy.is_file() or not folder.run_json.is_file():
        return []
    info = folder.info()
    return report_of_run(folder.spec_copy, smoke=info.invocation.smoke, mode=mode,
                         overrides=[*info.invocation.overrides, *info.designed_overrides])


def _secondary_columns(runs: pd.DataFrame, rows: list[str], ref: str,
                       report: list[Secondary]) -> tuple[dict[str, list[Any]], list[Secondary], list[str]]:
    """Per ``report:`` metric the trials reported, one column each of: the mean
    of each row's config over seeds, its paired difference to ``ref``'s config
    (row minus ref) with a 95% t-interval, and that difference's paired t-test,
    Holm-corrected over this metric's rows only (``<metric> p_holm``, ``<metric>
    sig``). Also the metrics shown, and a line for each one the trials lack."""
    cols: dict[str, list[Any]] = {}
    shown: list[Secondary] = []
    missing: list[str] = []
    ours = runs[runs["config"].isin([*rows, ref])]
    for sec in report:
        m = sec.metric
        if m not in ours or ours[m].isna().all():
            missing.append(f"{m}: not reported by the trials")
            continue
        shown.append(sec)
        base = ours[ours["config"] == ref].set_index("seed")[m].dropna()
        means, deltas, los, his, pvals = [], [], [], [], []
        for label in rows:
            x = ours[ours["config"] == label].set_index("seed")[m].dropna()
            cmp = paired_comparison(x, base, sec.mode) if label != ref else {}
            means.append(float(x.mean()) if len(x) else math.nan)
            deltas.append(cmp.get("delta", math.nan))
            los.append(cmp.get("delta_lo", math.nan))
            his.append(cmp.get("delta_hi", math.nan))
            pvals.append(cmp.get("p", math.nan))
        adjusted = holm(pvals)
        cols.update({f"{m} mean": means, f"{m} delta": deltas, f"{m} delta_lo": los, f"{m} delta_hi": his,
                     f"{m} p_holm": adjusted, f"{m} sig": [_mark(p) for p in adjusted]})
    return cols, shown, missing


def _secondary_caption(shown: list[Secondary], metric: str, against: str) -> str:
    if not shown:
        return ""
    each = ", ".join(f"{s.metric} ({Direction(s.mode).word} is better)" for s in shown)
    return (f" Secondary metrics (the spec's `report:`, shown, not optimised): {each}; per metric `mean` over seeds "
            f"and `delta`, {against} in that metric, the mean of the paired differences over seeds with a 95% "
            f"t-interval; its paired t-test is Holm-corrected within that metric's column, separately from {metric}'s.")


def load_confirmation(run_dir: Path, *, metric: str, mode: str,
                      report: list[Secondary] | None = None) -> ConfirmationResult | None:
    """``report``: the secondary metrics (None: the run's spec copy's ``report:``)."""
    report = secondary_of_run(run_dir, mode) if report is None else report
    loaded = _load_designed(run_dir, [metric, *[s.metric for s in report if s.metric != metric]])
    if loaded is None:
        return None
    candidates, runs = loaded
    if not candidates.get("confirm", True):
        return None
    max_epochs = int(candidates["max_epochs"])
    configs = [c for c in candidates["configs"] if "confirm" in c.get("roles", ["confirm"])]
    labels = [c["label"] for c in configs]
    params = {c["label"]: c["params"] for c in configs}
    baseline_label = next((c["label"] for c in candidates["configs"]
                           if c["label"] == BASELINE_LABEL or BASELINE_LABEL in c.get("aliases", [])), BASELINE_LABEL)
    caption = (f"Confirmation (designed evidence): each config re-run for the full {max_epochs} epochs over the same "
               f"{candidates['seeds']} seeds, no early stopping; {metric} at the last epoch, mean ± std over seeds; "
               "`wins`: seeds where the config beat the baseline (the best config with the spec's baseline values); "
               "paired t-test over seeds against the baseline, Holm-corrected over the table; * p_holm < 0.05, "
               "** p_holm < 0.01.")
    runs = runs[runs["config"].isin(labels)]
    if runs.empty:
        return ConfirmationResult(runs, None, caption, "The confirmation stage has not finished any run yet.")
    base = runs[runs["config"] == baseline_label].set_index("seed")[metric]
    out: list[dict[str, Any]] = []
    pvals: list[float] = []
    for label in labels:
        x = runs[runs["config"] == label].set_index("seed")[metric]
        cmp: dict[str, Any] = paired_comparison(x, base, mode) if label != baseline_label else {"p": math.nan, "wins": "", "delta": math.nan}
        pvals.append(cmp["p"])
        out.append({"config": BASELINE_LABEL if label == baseline_label else label, "params": _params_text(params[label]),
                    "seeds": len(x), "mean": float(x.mean()) if len(x) else math.nan,
                    "std": float(x.std(ddof=1)) if len(x) > 1 else math.nan,
                    "delta_vs_baseline": cmp["delta"], "wins": cmp["wins"], "p": cmp["p"]})
    summary = pd.DataFrame(out)
    summary["p_holm"] = holm(pvals)
    summary["sig"] = [_mark(p) for p in summary["p_holm"]]
    extra, shown, missing = _secondary_columns(runs, labels, baseline_label, report)
    for col, values in extra.items():
        summary[col] = values
    caption += _secondary_caption(shown, metric, "config minus baseline")
    top = summary[summary["config"] != BASELINE_LABEL].dropna(subset=["mean"])
    sentence = "The confirmation stage has no finished top config yet."
    if not top.empty and len(base):
        first = top.iloc[0]
        sentence = (f"Confirmation (designed, full budget, {candidates['seeds']} seeds): the top search config "
                    f"({first['params']}) re-run scored a mean of {first['mean']:.4g} ± {first['std']:.2g} (sd over "
                    f"seeds; not the search trial's one-seed value) against the baseline's "
                    f"{base.mean():.4g} ± {(base.std(ddof=1) if len(base) > 1 else math.nan):.2g}, better in "
                    f"{first['wins']} seeds (paired t-test p = {first['p']:.3g}, Holm {first['p_holm']:.3g}).")
    return ConfirmationResult(runs, summary, caption, sentence, shown, missing)


def load_leave_one_out(run_dir: Path, *, metric: str, mode: str,
                       report: list[Secondary] | None = None) -> LeaveOneOutResult | None:
    """The leave-one-out table: per factor, the best config with that factor at
    its baseline, minus the best config, paired over seeds. ``report``: the
    secondary metrics (None: the run's spec copy's ``report:``)."""
    report = secondary_of_run(run_dir, mode) if report is None else report
    loaded = _load_designed(run_dir, [metric, *[s.metric for s in report if s.metric != metric]])
    if loaded is None or not loaded[0].get("leave_one_out"):
        return None
    return leave_one_out(*loaded, metric=metric, mode=mode, report=report)


def leave_one_out(candidates: dict, runs: pd.DataFrame, *, metric: str, mode: str,
                  report: list[Secondary] | None = None) -> LeaveOneOutResult:
    """The table from a designed-stage plan (studies.runs.designed.plan_designed)
    and its full-budget runs (config label, seed, metric, and each ``report``
    metric)."""
    max_epochs = int(candidates["max_epochs"])
    best = next(c for c in candidates["configs"] if "loo_best" in c.get("roles", []))
    caption = (f"Leave-one-out ablation (designed evidence): the best search config, and the same config with one "
               f"factor set to its baseline value, each re-run for the full {max_epochs} epochs over the same "
               f"{candidates['loo_seeds']} seeds. `delta`: variant minus best ({metric}, "
               f"{'positive' if mode == 'min' else 'negative'} = the factor's setting in the best config helps), "
               "mean of the paired differences over seeds with a 95% t-interval; `best wins`: seeds where the best "
               "config beat the variant; paired t-test, Holm-corrected over the table; * p_holm < 0.05, ** p_holm < 0.01.")
    best_x = runs[runs["config"] == best["label"]].set_index("seed")[metric]
    rows, pvals, labels = [], [], []
    for c in candidates["configs"]:
        for factor in c.get("factors", []):
            labels.append(c["label"])
            x = runs[runs["config"] == c["label"]].set_index("seed")[metric]
            cmp = paired_comparison(x, best_x, mode)
            wins = "" if not cmp["n"] else f"{cmp['n'] - int(cmp['wins'].split('/')[0]) - _ties(x, best_x)}/{cmp['n']}"
            pvals.append(cmp["p"])
            rows.append({"factor": factor, "set to": _params_text({factor: c["params"].get(factor, "(inactive)")}) if factor in c["params"]
                         else f"{factor} inactive", "best has": _params_text({factor: best["params"].get(factor)}),
                         "seeds": cmp["n"], "variant mean": float(x.mean()) if len(x) else math.nan,
                         "delta": cmp["delta"], "delta_lo": cmp["delta_lo"], "delta_hi": cmp["delta_hi"],
                         "best wins": wins, "p": cmp["p"]})
    table = pd.DataFrame(rows, columns=["factor", "set to", "best has", "seeds", "variant mean", "delta", "delta_lo",
                                        "delta_hi", "best wins", "p"])
    shown: list[Secondary] = []
    missing: list[str] = []
    if not table.empty:
        table["p_holm"] = holm(pvals)
        table["sig"] = [_mark(p) for p in table["p_holm"]]
        extra, shown, missing = _secondary_columns(runs, labels, best["label"], report or [])
        for col, values in extra.items():
            table[col] = values
        caption += _secondary_caption(shown, metric, "variant minus best")
        order = table["delta"].abs().sort_values(ascending=False).index
        table = table.loc[order].reset_index(drop=True)
    return LeaveOneOutResult(table if len(best_x) else None, caption, candidates.get("loo_skipped", {}), best["params"],
                             shown, missing)


def _ties(x: pd.Series, base: pd.Series) -> int:
    common = x.index.intersection(base.index)
    return int((x.loc[common] == base.loc[common]).sum())


def _mark(p: float) -> str:
    return "" if math.isnan(p) else "**" if p < 0.01 else "*" if p < 0.05 else ""


def _load_designed(run_dir: Path, metric: str | list[str]) -> tuple[dict, pd.DataFrame] | None:
    """The stage's plan and its runs at the full budget (a (label, seed) that
    ran twice is refused, see studies.runs.designed_record)."""
    folder = RunFolder(run_dir)
    plan = read_plan(folder)
    if plan is None:
        return None
    metrics = metric if isinstance(metric, list) else [metric]
    runs = complete_runs(folder.designed, metrics, int(plan["max_epochs"]))
    return plan, runs[["config", "seed", *metrics, "epochs"]].reset_index(drop=True)


@dataclass
class FrontConfirmation:
    runs: pd.DataFrame            # config, seed, each metric, epochs
    summary: pd.DataFrame | None  # one row per config
    means: pd.DataFrame | None    # config and each metric's mean over seeds (for the Pareto plot)
    caption: str
    sentence: str


def load_front_confirmation(run_dir: Path, *, metrics: list[str], modes: list[str]) -> FrontConfirmation | None:
    """Front configs and the baseline re-run over the same seeds: per objective
    the mean ± sd and the paired difference to the baseline (paired t-test,
    Holm over every config and objective of the table), and whether each
    config's means stay off every other confirmed config's dominance."""
    loaded = _load_designed(run_dir, metrics)
    if loaded is None:
        return None
    candidates, runs = loaded
    if not candidates.get("front"):
        return None
    configs = candidates["configs"]
    caption = _front_caption(candidates)
    runs = runs[runs["config"].isin([c["label"] for c in configs])]
    if runs.empty:
        return FrontConfirmation(runs, None, None, caption, "The confirmation stage has not finished any run yet.")
    summary = _front_summary(runs, configs, metrics, modes)
    means = summary[["config", *[f"{m} mean" for m in metrics]]].rename(columns={f"{m} mean": m for m in metrics})
    summary = _with_on_front(summary, means, metrics, modes)
    return FrontConfirmation(runs, summary, means, caption, _front_sentence(summary, metrics, modes, candidates))


def _front_caption(candidates: dict) -> str:
    return (f"Confirmation of the front (designed evidence): front configs of the search (spread along it by "
            f"crowding distance) and the baseline, each re-run for the full {candidates['max_epochs']} epochs over "
            f"the same {candidates['seeds']} seeds, no early stopping. Per objective: mean ± sd over seeds, and the "
            "paired difference to the baseline (config minus baseline) with a paired t-test over seeds, "
            "Holm-corrected over every config and objective of the table; * p_holm < 0.05, ** p_holm < 0.01. "
            "`on_front`: no other confirmed config's means beat this one's in every objective.")


def _front_summary(runs: pd.DataFrame, configs: list[dict], metrics: list[str], modes: list[str]) -> pd.DataFrame:
    """One row per config: per objective mean, sd, and the paired difference to the baseline, Holm over the table."""
    params = {c["label"]: c["params"] for c in configs}
    # The baseline may be a front config itself: then it ran once, under the front label (its alias: baseline).
    base_label = next((c["label"] for c in configs if c["label"] == BASELINE_LABEL or BASELINE_LABEL in c.get("aliases", [])),
                      BASELINE_LABEL)
    base = runs[runs["config"] == base_label].set_index("seed")
    rows: list[dict[str, Any]] = []
    pvals: list[float] = []
    where: list[tuple[int, str]] = []
    for label in (c["label"] for c in configs):
        x = runs[runs["config"] == label].set_index("seed")
        shown = label if label != base_label or label == BASELINE_LABEL else f"{label} = {BASELINE_LABEL}"
        row: dict[str, Any] = {"config": shown, "params": _params_text(params[label]), "seeds": len(x)}
        for metric, mode in zip(metrics, modes):
            row[f"{metric} mean"] = float(x[metric].mean()) if len(x) else math.nan
            row[f"{metric} sd"] = float(x[metric].std(ddof=1)) if len(x) > 1 else math.nan
            if label != base_label and len(base):
                cmp = paired_comparison(x[metric], base[metric], mode)
                row[f"{metric} delta"], row[f"{metric} p"] = cmp["delta"], cmp["p"]
                pvals.append(cmp["p"])
                where.append((len(rows), metric))
            else:
                row[f"{metric} delta"], row[f"{metric} p"] = math.nan, math.nan
        rows.append(row)
    return _with_holm(pd.DataFrame(rows), where, pvals, metrics)


def _with_holm(summary: pd.DataFrame, where: list[tuple[int, str]], pvals: list[float],
               metrics: list[str]) -> pd.DataFrame:
    """``p_holm`` and ``sig`` per objective, Holm over every comparison ``where`` names; the columns in table order."""
    for (i, metric), p in zip(where, holm(pvals)):
        summary.loc[i, f"{metric} p_holm"] = p
        summary.loc[i, f"{metric} sig"] = _mark(p)
    for metric in metrics:   # comparisons may all be missing (no baseline run yet): the columns still exist
        for col, empty in ((f"{metric} p_holm", math.nan), (f"{metric} sig", "")):
            if col not in summary:
                summary[col] = empty
    return summary[["config", "params", "seeds", *[f"{m} {c}" for m in metrics
                                                   for c in ("mean", "sd", "delta", "p", "p_holm", "sig")]]]


def _with_on_front(summary: pd.DataFrame, means: pd.DataFrame, metrics: list[str], modes: list[str]) -> pd.DataFrame:
    from studies.spec.pareto import nondominated_ranks

    finite = means[metrics].notna().all(axis=1)
    summary["on_front"] = False
    if finite.any():
        summary.loc[finite, "on_front"] = nondominated_ranks(means.loc[finite, metrics].to_numpy(dtype=float), modes) == 0
    return summary


def _front_sentence(summary: pd.DataFrame, metrics: list[str], modes: list[str], candidates: dict) -> str:
    is_base = summary["config"].str.endswith(BASELINE_LABEL)
    front = summary[~is_base]
    if front.empty or not is_base.any():
        return "The confirmation stage has no finished front config and baseline pair yet."
    base = summary[is_base].iloc[0]
    kept = summary[summary["on_front"] & (summary["config"] != BASELINE_LABEL)]
    n_front = len(summary) - int((summary["config"] == BASELINE_LABEL).sum())
    parts = [f"re-run over {candidates['seeds']} seeds at the full budget, {len(kept)} of the {n_front} front "
             f"configs stay on the front of the confirmed means"
             + ("" if base["config"] == BASELINE_LABEL else f" ({base['config']}: the baseline is a front config itself)")
             + ("" if not bool(base["on_front"]) else "; the baseline's means are on it too")]
    for _, r in front.iterrows():
        diffs = []
        for metric, mode in zip(metrics, modes):
            d, sig = r.get(f"{metric} delta", math.nan), r.get(f"{metric} sig", "")
            if isinstance(d, float) and math.isnan(d):
                continue
            word = "better" if Direction(mode).improves(d) else "worse" if d != 0 else "equal"
            diffs.append(f"{metric} {d:+.3g} ({word}{', ' + sig if sig else ', not significant'})")
        beats = all(Direction(mode).improves(r.get(f"{metric} delta", math.nan)) and r.get(f"{metric} sig", "")
                    for metric, mode in zip(metrics, modes))
        verdict = "beats the baseline in every objective" if beats else "trades off against the baseline"
        parts.append(f"{r['config']} ({r['params']}) {verdict}: " + ", ".join(diffs))
    return "; ".join(parts) + "."
