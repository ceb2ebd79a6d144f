"""Turn a run folder into tables/ (Markdown, CSV, LaTeX) and plots/ (PNG).

Ray-free and idempotent: ``--report`` reruns it on any run folder, finished,
interrupted or still running, in seconds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from studies.report import plots
from studies.report.ablation import AblationResult, FactorTable, build_ablation
from studies.report.space import factor_infos
from studies.report.budget import budget_table
from studies.report.confirmation import ConfirmationResult, load_confirmation
from studies.report.importance import param_importances
from studies.report.trials import STATUS_COMPLETE, RunTrials
from studies.report.tensorboard_hparams import write_hparams
from studies.report.trials_table import write_trials_table

CAPTION_STATS = ("Mean ± 95% t-interval; each level vs the reference level by a two-sided Mann-Whitney U test, "
                 "p-values Holm-corrected within the table; * p_holm < 0.05, ** p_holm < 0.01.")


def _fmt_num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _fmt_p(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """Readable strings for Markdown/LaTeX: mean ± CI merged, p-values short."""
    d = table.copy()
    if {"mean", "ci95"} <= set(d.columns):
        d["mean ± 95% CI"] = [f"{_fmt_num(m)} ± {_fmt_num(c, 2)}" if not math.isnan(c) else _fmt_num(m) for m, c in zip(d["mean"], d["ci95"])]
        cols = list(d.columns)
        cols.insert(cols.index("mean"), cols.pop(cols.index("mean ± 95% CI")))
        d = d[cols].drop(columns=["mean", "ci95"])
    for col in d.columns:
        if col in ("p", "p_holm"):
            d[col] = d[col].map(_fmt_p)
        elif pd.api.types.is_float_dtype(d[col]):
            d[col] = d[col].map(_fmt_num)
    return d.fillna("").astype(str)


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "±": r"$\pm$"}


def latex_text(markdown: str) -> str:
    """A Markdown caption as LaTeX text: emphasis and code marks dropped, specials escaped."""
    plain = markdown.replace("**", "").replace("`", "")
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in plain)


def _write_table(table: pd.DataFrame, stem: Path, caption: str) -> list[Path]:
    shown = _display(table)
    md, csv, tex = stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".tex")
    table.to_csv(csv, index=False)
    md.write_text(f"{caption}\n\n{shown.to_markdown(index=False)}\n")
    tex.write_text(shown.to_latex(index=False, caption=latex_text(caption), label=f"tab:{stem.name}", escape=True))
    return [md, csv, tex]


def _factor_caption(ft: FactorTable, ab: AblationResult) -> str:
    return (f"**{ft.factor}** — {ab.metric} ({'lower' if ab.mode == 'min' else 'higher'} is better) at epoch {ft.rung} "
            f"(ASHA rung; {ft.at_rung} of {ab.n_trials} trials reached it), by level; "
            f"reference: {ft.reference} ({ft.reference_why}). `trials`: trials with that level; `at_rung`: those that "
            f"reached epoch {ft.rung}; `full_budget`: those that ran all {ab.max_epochs} epochs. {CAPTION_STATS}")


def _best_trial(run: RunTrials, metric: str, mode: str) -> pd.Series | None:
    df = run.trials
    col = f"best_{metric}"
    pool = df[df["status"] == STATUS_COMPLETE] if (df["status"] == STATUS_COMPLETE).any() else df
    pool = pool[pool[col].notna()]
    if pool.empty:
        return None
    return pool.loc[pool[col].idxmin() if mode == "min" else pool[col].idxmax()]


def _describe_params(row: pd.Series, params: list[str]) -> str:
    return ", ".join(f"{p}={_fmt_num(row[p], 3)}" for p in params if p in row and row[p] is not None and row[p] == row[p])


def answer_paragraph(run: RunTrials, ab: AblationResult, baseline: dict[str, Any], importances: pd.DataFrame,
                     confirmation: ConfirmationResult | None) -> str:
    """The report's first paragraph: the answer in plain words, with its evidence."""
    better = "lower" if ab.mode == "min" else "higher"
    parts = []
    question = next((t for t in ab.tables if t.factor in baseline), ab.tables[0] if ab.tables else None)
    if question is not None:
        t = question.table
        ref_row = t[t["level"].str.endswith("(ref)")]
        others = t[~t["level"].str.endswith("(ref)") & t["mean"].notna()]
        if not others.empty and not ref_row.empty and not math.isnan(ref_row["mean"].iloc[0]):
            ref = ref_row.iloc[0]
            best = others.loc[others["mean"].idxmin() if ab.mode == "min" else others["mean"].idxmax()]
            delta = best["mean"] - ref["mean"]
            wins = (delta < 0) if ab.mode == "min" else (delta > 0)
            rel = f" ({delta / abs(ref['mean']) * 100:+.0f}%)" if ref["mean"] else ""
            verdict = ("a significant difference" if best["sig"] else "not a significant difference") + \
                (f" (Mann-Whitney p = {_fmt_p(best['p'])}, Holm-adjusted {_fmt_p(best['p_holm'])})" if not math.isnan(best["p"]) else " (too few trials to test)")
            parts.append(
                f"At epoch {question.rung} (the deepest ASHA rung where the reference still had 2+ trials; {question.at_rung} of {ab.n_trials} trials reached it), "
                f"the best level of **{question.factor}** was **{best['level']}** with mean {ab.metric} "
                f"{_fmt_num(best['mean'])} (n = {int(best['at_rung'])}), {'beating' if wins else 'not beating'} the reference "
                f"{question.reference} at {_fmt_num(ref['mean'])} (n = {int(ref['at_rung'])}) by {_fmt_num(abs(delta), 3)}{rel}: {verdict}.")
    others_sig = [f"{t.factor} = {r['level']}" for t in ab.tables if t is not question
                  for _, r in t.table.iterrows() if r["sig"]]
    if others_sig:
        parts.append("Other levels that differ significantly from their reference: " + "; ".join(others_sig) + ".")
    elif len(ab.tables) > 1:
        parts.append("No other factor level differs significantly from its reference.")
    best_trial = _best_trial(run, ab.metric, ab.mode)
    if best_trial is not None:
        parts.append(f"The best trial ({best_trial['trial_id']}, {int(best_trial['epochs'])} epochs) reached {ab.metric} "
                     f"{_fmt_num(best_trial[f'best_{ab.metric}'])} with {_describe_params(best_trial, run.params)}.")
    ranked = importances.dropna(subset=["importance"])
    if not ranked.empty:
        parts.append(f"PED-ANOVA ranks **{ranked['parameter'].iloc[0]}** as the most important parameter.")
    if confirmation is not None and confirmation.summary is not None and not confirmation.summary.empty:
        parts.append(confirmation.sentence)
    else:
        parts.append("No confirmation over seeds was run (`--confirm`), so these figures come from single-seed search trials.")
    return f"({better} {ab.metric} is better) " + " ".join(parts)


def write_report(run_dir: Path, run: RunTrials, *, spec: Any, info: dict[str, Any]) -> list[Path]:
    tables_dir, plots_dir = run_dir / "tables", run_dir / "plots"
    tables_dir.mkdir(exist_ok=True)
    plots_dir.mkdir(exist_ok=True)
    written = write_trials_table(run, tables_dir, metric=spec.metric, mode=spec.mode)
    report = tables_dir / "ablation.md"
    if run.trials.empty or run.history.empty:
        report.write_text(f"# {spec.name}: no results yet\n\nNo trial of run `{run_dir.name}` has reported an epoch.\n")
        return written + [report]
    a = spec.ablation
    names = set(a.factors) or {p.name for p in spec.params}
    factors = factor_infos(spec.params, names)
    ab = build_ablation(run, metric=spec.metric, mode=spec.mode, factors=factors, baseline=a.baseline, bins=a.bins,
                        max_epochs=spec.budget.max_epochs, grace_period=spec.budget.grace_period,
                        reduction_factor=spec.budget.reduction_factor)
    importances = param_importances(run, ab, factors)
    budget = budget_table(run, run_dir, info)
    confirmation = load_confirmation(run_dir, metric=spec.metric, mode=spec.mode)

    sections = []
    long = []
    for ft in ab.tables:
        written += _write_table(ft.table, tables_dir / f"ablation_{ft.factor}", _factor_caption(ft, ab))
        sections.append(f"## {ft.factor}\n\n{_factor_caption(ft, ab)}\n\n{_display(ft.table).to_markdown(index=False)}\n")
        long.append(ft.table.assign(factor=ft.factor, rung=ft.rung, reference=ft.reference))
    pd.concat(long).to_csv(tables_dir / "ablation.csv", index=False)
    written.append(tables_dir / "ablation.csv")
    imp_caption = ("Parameter importance: PED-ANOVA (Optuna, unnormalised), on each parameter's sampled trials, "
                   f"values at epoch {ab.rung}.")
    written += _write_table(importances, tables_dir / "importance", imp_caption)
    budget_caption = "Budget: what the study cost and what ASHA's early stopping saved."
    written += _write_table(budget, tables_dir / "budget", budget_caption)
    if confirmation is not None and confirmation.summary is not None:
        written += _write_table(confirmation.summary, tables_dir / "confirmation", confirmation.caption)

    rung_counts = ", ".join(f"epoch {r}: {n}" for r, n in sorted(ab.rungs.items()))
    status = info.get("status", "?")
    header = (f"# {spec.name}: ablation report\n\n"
              f"{answer_paragraph(run, ab, a.baseline, importances, confirmation)}\n\n"
              f"*Run `{run_dir.name}` ({status}); {len(run.trials)} trials; trials reaching each rung: {rung_counts}. "
              f"Question: {spec.description or '(no description in the spec)'}*\n")
    body = "\n".join(sections)
    extra = f"## Parameter importance\n\n{imp_caption}\n\n{_display(importances).to_markdown(index=False)}\n\n" \
            f"## Budget\n\n{budget_caption}\n\n{_display(budget).to_markdown(index=False)}\n"
    if confirmation is not None and confirmation.summary is not None:
        extra += f"\n## Confirmation\n\n{confirmation.caption}\n\n{_display(confirmation.summary).to_markdown(index=False)}\n"
    extra += "\nPlots: `plots/factors.png`, `plots/learning_curves.png`, `plots/importance.png`" + \
        (", `plots/confirmation.png`" if confirmation is not None and confirmation.summary is not None else "") + \
        ". All trials: `tables/trials.md`.\n"
    report.write_text(header + "\n" + body + "\n" + extra)
    written.append(report)

    written.append(plots.plot_factors(run, ab, factors, a.bins, plots_dir))
    order = run.trials.sort_values(f"best_{spec.metric}", ascending=spec.mode == "min")
    best_ids = order[order["status"] == STATUS_COMPLETE]["trial_id"].head(5).tolist() or order["trial_id"].head(5).tolist()
    base_mask = pd.Series(True, index=run.trials.index)
    for key, value in a.baseline.items():
        base_mask &= run.trials[key] == value
    base_ids = order[base_mask.reindex(order.index)]["trial_id"].head(2).tolist() if a.baseline else []
    written.append(plots.plot_learning_curves(run, spec.metric, spec.mode, best_ids, base_ids, plots_dir))
    choices = {p.name: list(p.choices) for p in spec.params if p.type == "categorical"}
    written.append(write_hparams(run_dir, run, metric=spec.metric, choices=choices))
    for name, columns in plots.per_frame_groups(run.history).items():
        path, curve = plots.plot_per_frame(run, name, columns, best_ids, base_ids, plots_dir)
        curve.to_csv(tables_dir / f"{name}_per_frame.csv", index=False)
        written += [path, tables_dir / f"{name}_per_frame.csv"]
    if importances["importance"].notna().any():
        written.append(plots.plot_importances(importances, plots_dir))
    if confirmation is not None and confirmation.runs is not None and not confirmation.runs.empty:
        written.append(plots.plot_confirmation(confirmation.runs, spec.metric, plots_dir))
    return written
