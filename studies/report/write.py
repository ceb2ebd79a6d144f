"""Turn a run folder into tables/ (Markdown, CSV, LaTeX) and plots/ (PNG).

Ray-free and idempotent: ``--report`` reruns it on any run folder, finished,
interrupted or still running, in seconds.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from studies.background import ending_threads, wait_for_ending_threads
from studies.report import expected_best, plots
from studies.report.ablation import AblationResult, FactorTable, build_ablation
from studies.report.analysis import Analysis, analyse
from studies.report.answer import answer_claims, answer_parts, modelled_claims, short_answer
from studies.report.budget import budget_table
from studies.report.claims import Claim
from studies.report.confirmation import load_confirmation, load_leave_one_out
from studies.report.expected_best import expected_best_curve
from studies.report.importance import FANOVA_MAX_TRIALS
from studies.report.latex import latex_table
from studies.report.methods import methods_paragraph
from studies.report.modelled import MIN_CELL, MIN_CONFIGS, MIN_CONFIGS_PER_LEVEL, R2_MIN, ModelledTable
from studies.report.tensorboard_hparams import write_hparams
from studies.report.trials_table import write_trials_table
from studies.runs.run_folder import RunFolder, RunInfo
from studies.runs.trials import STATUS_COMPLETE, RunTrials
from studies.spec.direction import Direction

CAPTION_STATS = ("Mean ± 95% t-interval; each level vs the reference level by a two-sided Mann-Whitney U test, "
                 "p-values Holm-corrected within the table; * p_holm < 0.05, ** p_holm < 0.01.")
EVIDENCE_LEGEND = (
    "Evidence, strongest first. **Designed**: runs the platform chose for the comparison, at the full budget over "
    "seeds (leave-one-out, confirmation). **Modelled**: a surrogate fitted on every trial at one rung, averaged over "
    "the declared space (global marginals, as fANOVA). **Observed**: per-level means over the trials the searcher "
    "chose, which over-sample its favourite region (local, not global).")
BUDGET_CAPTION = "Budget: what the study cost, what ASHA's early stopping saved, and what the designed runs cost."


def _fmt_num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _fmt_p(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if v == 0:  # a bootstrap p where no refit crossed 0: below the bootstrap's resolution
        return "0"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """Readable strings for Markdown/LaTeX: mean ± CI merged, p-values short."""
    d = table.copy()
    if {"mean", "ci95"} <= set(d.columns):
        d["mean ± 95% CI"] = [f"{_fmt_num(m)} ± {_fmt_num(c, 2)}" if not math.isnan(c) else _fmt_num(m) for m, c in zip(d["mean"], d["ci95"])]
        cols = list(d.columns)
        cols.insert(cols.index("mean"), cols.pop(cols.index("mean ± 95% CI")))
        d = d[cols].drop(columns=["mean", "ci95"])
    for value, lo, hi, name in (("marginal", "lo", "hi", "marginal [95% CI]"), ("delta", "delta_lo", "delta_hi", "delta [CI]")):
        if {value, lo, hi} <= set(d.columns):
            d[name] = [f"{_fmt_num(v)} [{_fmt_num(a, 3)}, {_fmt_num(b, 3)}]" if not math.isnan(v) else ""
                       for v, a, b in zip(d[value], d[lo], d[hi])]
            cols = list(d.columns)
            cols.insert(cols.index(value), cols.pop(cols.index(name)))
            d = d[cols].drop(columns=[value, lo, hi])
    for col in d.columns:
        if col in ("p", "p_holm"):
            d[col] = d[col].map(_fmt_p)
        elif pd.api.types.is_float_dtype(d[col]):
            d[col] = d[col].map(_fmt_num)
    return d.fillna("").astype(str)


def _write_table(table: pd.DataFrame, stem: Path, caption: str) -> list[Path]:
    shown = _display(table)
    md, csv, tex = stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".tex")
    table.to_csv(csv, index=False)
    md.write_text(f"{caption}\n\n{shown.to_markdown(index=False)}\n")
    tex.write_text(latex_table(shown, caption, label=f"tab:{stem.name}"))
    return [md, csv, tex]


def _observed_caption(ft: FactorTable, ab: AblationResult) -> str:
    return (f"**{ft.factor}**, observed — {ab.metric} ({'lower' if ab.mode == 'min' else 'higher'} is better) at epoch "
            f"{ft.rung} (ASHA rung; {ft.at_rung} of {ab.n_trials} trials reached it), per level over the trials the "
            f"searcher chose, which over-sample its favourite region: local, not global. Reference: {ft.reference} "
            f"({ft.reference_why}). `trials`: trials with that level; `at_rung`: distinct configs at epoch {ft.rung} "
            f"(identical configs merged into one observation, their mean); `repeats`: trials merged so; "
            f"`full_budget`: trials that ran all {ab.max_epochs} epochs. {CAPTION_STATS}")


def _modelled_caption(t: ModelledTable, an: Analysis, metric: str, mode: str) -> str:
    m = an.modelled
    scope = "over the whole declared space" if t.scope == "whole space" else f"over the declared space {t.scope}"
    fitted = f"log({metric}) (a ratio-scale metric: no marginal below 0)" if m.log_scale else metric
    r2 = "not computed" if math.isnan(m.fit_r2) else f"{m.fit_r2:.3f}"
    gate = (f"**No mark in this table: {m.gate}.** " if m.gate else "")
    return (f"{gate}**{t.factor}**, modelled — global marginal of {metric} ({'lower' if mode == 'min' else 'higher'} is "
            f"better) at epoch {m.rung}: a surrogate (each factor's main effect, a smooth curve for a numeric factor "
            f"and one value per choice, plus a random forest on what they leave; scikit-learn) fitted to {fitted} on "
            f"the {m.n_configs} distinct configs "
            f"that reached epoch {m.rung} ({m.n_repeats} repeated trials merged), its prediction averaged {scope} with "
            f"the factor at each level (a bin: drawn inside it), every other factor uniform on its declared range, as "
            f"in fANOVA (Hutter et al., ICML 2014); out-of-bag R² of the surrogate {r2} (every trial predicted by "
            f"trees that did not see it). Intervals: 95%, from "
            f"{m.n_boot} refits on resampled configs with fresh noise (pairs + wild bootstrap), centred on the fit to "
            f"all trials; `delta`: level minus the reference "
            f"{t.reference} ({t.reference_why}), its interval at the level Holm's procedure tests it at; `p`: "
            f"two-sided bootstrap p-value (0: no refit crossed 0, so p < 1/{m.n_boot}), `p_holm` Holm-corrected "
            f"within the table; a mark only at ** p_holm < 0.01 (modelled evidence gets the stricter level: its "
            f"bootstrap covers the trials' noise, not the surrogate's own error). `configs`: distinct configs at the level. "
            f"Gates: a mark is given only when the surrogate's out-of-bag R² is at least {R2_MIN}, the study has at "
            f"least {MIN_CONFIGS} distinct configs, the level has {MIN_CONFIGS_PER_LEVEL}, the level and the reference were each sampled at least {MIN_CELL} time(s) with "
            "every level of each factor that matters (main effect at least 5% of the largest, in variance), the "
            "level's effect does not change sign with another factor, and the trials' own least-squares test agrees "
            "(every factor's levels, crossed with the tested one where the trials leave the declared design; same "
            "sign, p_holm < 0.05 with Holm over every modelled table); `withheld` says which gate kept a mark back.")


def _modelled_short(t: ModelledTable, an: Analysis, metric: str, mode: str) -> str:
    m = an.modelled
    gate = f"**No mark in this table: {m.gate}.** " if m.gate else ""
    r2 = "not computed" if math.isnan(m.fit_r2) else f"{m.fit_r2:.3f}"
    return (f"{gate}**{t.factor}**, modelled — global marginal of {metric} ({Direction(mode).word} is better) at "
            f"epoch {m.rung}, averaged over the declared space, from a surrogate fitted to {m.n_configs} distinct "
            f"configs (out-of-bag R² {r2}). Reference: {t.reference}. A mark only at ** p_holm < 0.01 and where the "
            f"gates hold (`withheld` says why not). Full note: `tables/modelled_{t.factor}.md`.")


def _interactions_caption(factor: str, an: Analysis, metric: str) -> str:
    return (f"**{factor}**, modelled, by level of another factor — each level of {factor} minus its reference "
            f"({metric}, epoch {an.modelled.rung}) within one level (`given`) of another factor that matters, the rest "
            "of the declared space averaged as in the modelled tables (fANOVA's second order, said as differences). "
            "Bootstrap intervals at the level Holm tests them at, Holm-corrected over every such difference of "
            f"{factor}; ** p_holm < 0.01 (the modelled tables' level); a mark only where the level's global mark was "
            "withheld for this other factor alone (else `withheld` says why: the answer claims each mark here), "
            f"the level and the reference were each sampled at least {MIN_CELL} times at that level of the other "
            "factor, in both halves of a bin (`configs`, `ref_configs`), and the trials of that level agree in a "
            "least-squares test (same sign, p_holm < 0.05 over every such difference of the factor).")


def _importance_caption(an: Analysis) -> str:
    return (f"Parameter importance at epoch {an.rung} over the declared ranges, {an.at_rung} trials, ranked by "
            "`modelled_variance`: the variance over the declared space of the parameter's modelled marginal (the "
            "surrogate of the modelled tables; `modelled_share` its share of the column). `fanova_variance`: the "
            "variance its main effect explains in Optuna's fANOVA evaluator (Hutter et al. 2014) fitted on the "
            "trials (a conditional parameter scored on the trials where it is active; above "
            f"{FANOVA_MAX_TRIALS} trials on a seeded random sample of that many, as `scored_on` says), "
            "`fanova_share` its share. "
            "`ped_anova`: Optuna's PED-ANOVA, which measures what separates the top configs from the rest (a "
            "local question), unnormalised.")


@dataclass(frozen=True)
class WrittenReport:
    """What write_report wrote, and the answer it gave (one claim per element)."""

    files: list[Path]
    answer: list[str]
    path: Path  # tables/ablation.md
    unreadable: list[str] = field(default_factory=list)   # parts of the run folder left out, one line each
    claims: list[Claim] = field(default_factory=list)     # what the answer's lines were rendered from


def one_line(text: str) -> str:
    """Spec text (a description) as one line of the report: its newlines and control
    characters become spaces, so a spec cannot add lines of its own to a report."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text or "").split())


def write_report(run_dir: Path, run: RunTrials, *, spec: Any, info: RunInfo) -> WrittenReport:
    folder = RunFolder(run_dir)
    folder.tables.mkdir(exist_ok=True)
    folder.plots.mkdir(exist_ok=True)
    written = write_trials_table(run, folder.tables, metric=spec.metric, mode=spec.mode, metrics=list(spec.metrics),
                                 modes=list(spec.modes))
    if run.trials.empty or run.history.empty:
        none_yet = f"No trial of run `{run_dir.name}` has reported an epoch."
        folder.report.write_text(f"# {spec.name}: no results yet\n\n{none_yet}\n")
        return WrittenReport(written + [folder.report], [none_yet], folder.report, list(run.unreadable))
    names = set(spec.ablation.factors) or {p.name for p in spec.params}
    factors = [f for f in spec.params if f.name in names]
    if getattr(spec, "multi_objective", False):
        return _write_tradeoff_report(run_dir, run, spec, info, factors, written)
    return _write_ablation_report(run_dir, run, spec, info, factors, written)


def _write_ablation_report(run_dir: Path, run: RunTrials, spec: Any, info: RunInfo, factors: list,
                           written: list[Path]) -> WrittenReport:
    """The report of a study with one objective: designed, modelled and observed evidence per factor."""
    folder = RunFolder(run_dir)
    tables_dir, report = folder.tables, folder.report
    ab, confirmation, an, side = _analyse_beside_the_plots(run_dir, run, spec, factors)
    loo = load_leave_one_out(run_dir, metric=spec.metric, mode=spec.mode, report=list(getattr(spec, "report", [])))
    budget = budget_table(run, run_dir, info)

    designed = _designed_sections(loo, confirmation, tables_dir, written)
    modelled = _modelled_section(an, spec, tables_dir, written)
    observed = _observed_section(ab, tables_dir, written)
    imp_caption = _importance_caption(an)
    written += _write_table(an.importance, tables_dir / "importance", imp_caption)
    written += _write_table(budget, tables_dir / "budget", BUDGET_CAPTION)

    question = [f.name for f in factors]
    screening = _screening(run, spec, factors)
    claims = answer_claims(run, an, metric=spec.metric, mode=spec.mode, scale=getattr(spec, "metric_scale", "interval"),
                           confirmation=confirmation, loo=loo, question=question,
                           smoke=bool(getattr(info.invocation, "smoke", False)), max_epochs=spec.budget.max_epochs,
                           screening=screening, fixed=dict(getattr(spec, "fixed", {}) or {}))
    designed += _screening_section(screening, spec, tables_dir, written)
    answer = answer_parts(claims, metric=spec.metric, mode=spec.mode, question=question)
    interactions = _interactions_section(an, spec.metric, tables_dir, written)
    short = short_answer(claims, metric=spec.metric, mode=spec.mode, question=question)
    header = _header(spec, run_dir.name, info.status, run, ab, answer, short)
    loo_table = loo.table if loo is not None and loo.table is not None and not loo.table.empty else None
    best_curve = _expected_best_section(run, spec, tables_dir, written)
    plots_list = _ablation_plots_named(loo_table is not None, confirmation, best_curve)
    methods = methods_paragraph(spec, info, run, an=an, budget=budget, confirmation=confirmation, loo=loo)
    report.write_text(
        header + designed + f"## Modelled marginals (search phase, epoch {an.rung})\n\n{modelled}" + interactions
        + f"## Observed (search phase, per factor's rung)\n\n{observed}"
        + f"## Parameter importance\n\n{imp_caption}\n\n{_display(an.importance).to_markdown(index=False)}\n\n"
        + best_curve
        + f"## Budget\n\n{BUDGET_CAPTION}\n\n{_display(budget).to_markdown(index=False)}\n\n"
        + f"## Methods\n\n{methods}\n\n"
        + "Plots: " + ", ".join(f"`{p}`" for p in plots_list) + ". All trials: `tables/trials.md`.\n")
    written.append(report)
    written += _plots_of_the_analysis(an, loo_table, spec.metric, folder.plots)
    return WrittenReport(written + side(), answer, report, list(run.unreadable), claims)


def _analyse_beside_the_plots(run_dir: Path, run: RunTrials, spec: Any,
                              factors: list) -> tuple[AblationResult, Any, Analysis, Callable[[], list[Path]]]:
    """The observed tables, the confirmation, and the analysis (surrogate, importance); the plots of the
    trials alone start in the background, to be waited for by calling the last element."""
    a = spec.ablation
    ab = build_ablation(run, metric=spec.metric, mode=spec.mode, factors=factors, baseline=a.baseline, bins=a.bins,
                        max_epochs=spec.budget.max_epochs, grace_period=spec.budget.grace_period,
                        reduction_factor=spec.budget.reduction_factor)
    confirmation = load_confirmation(run_dir, metric=spec.metric, mode=spec.mode, report=list(getattr(spec, "report", [])))
    # The plots that need no surrogate render in a second process while the surrogate is fitted; while a
    # run's Ray is still stopping (a thread, see studies.background), only after the fit, beside the tables.
    plots_of_the_trials = (_plots_of_the_trials, run_dir, run, spec, ab, factors, confirmation)
    side = None if ending_threads() else _in_background(*plots_of_the_trials)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # one core here, one for the plots (or Ray's shutdown): BLAS threads would contend
        an = analyse(run, factors, space=list(spec.params), metric=spec.metric, mode=spec.mode, baseline=a.baseline,
                     bins=a.bins, max_epochs=spec.budget.max_epochs, grace_period=spec.budget.grace_period,
                     reduction_factor=spec.budget.reduction_factor, seed=spec.seed, observed=ab,
                     scale=getattr(spec, "metric_scale", "interval"))
    if side is None:
        side = _in_background(*plots_of_the_trials)
    return ab, confirmation, an, side


def _ablation_plots_named(has_loo: bool, confirmation: Any, best_curve: str) -> list[str]:
    """The plots the report's last line names, in the order it names them."""
    plots_list = ["plots/modelled.png", "plots/factors.png", "plots/learning_curves.png", "plots/importance.png"]
    plots_list += (["plots/leave_one_out.png"] if has_loo else []) + (
        ["plots/confirmation.png"] if confirmation is not None and confirmation.summary is not None else [])
    plots_list += ["plots/expected_best.png"] if best_curve else []
    return plots_list


def _plots_of_the_analysis(an: Analysis, loo_table: pd.DataFrame | None, metric: str, plots_dir: Path) -> list[Path]:
    """The plots drawn from the analysis (modelled marginals, importance) and the leave-one-out table."""
    written = []
    if an.modelled.tables:
        written.append(plots.plot_modelled(an.modelled.tables, metric, an.rung, plots_dir))
    if an.importance[["modelled_share", "fanova_share", "ped_anova"]].notna().any().any():
        written.append(plots.plot_importances(an.importance, plots_dir, an.rung))
    if loo_table is not None:
        written.append(plots.plot_leave_one_out(loo_table, metric, plots_dir))
    return written


def _header(spec: Any, run_name: str, status: str, run: RunTrials, ab: AblationResult, answer: list[str],
            short: list[str] | None = None) -> str:
    """Title, the question, the short answer, what the run was, the evidence legend."""
    rung_counts = ", ".join(f"epoch {r}: {n}" for r, n in sorted(ab.rungs.items()))
    return (f"# {spec.name}: ablation report\n\n"
            f"**Question.** {one_line(spec.description) or '(no description in the spec)'}\n\n"
            + ("\n".join(short) + "\n\n" if short else "")
            + f"{answer_block(answer)}\n\n"
            f"*Run `{run_name}` ({status}); {len(run.trials)} trials; trials reaching each rung: {rung_counts}. "
            "Tables: designed evidence first, then modelled, then observed; each caption here is short, and the full "
            "note (method, gates) heads the table's own file in `tables/`; the methods are summed up at the end.*\n\n"
            + "".join(f"**Left out, unreadable:** {line}\n\n" for line in run.unreadable)
            + f"{EVIDENCE_LEGEND}\n\n")


MIN_FULL_BUDGET_TRIALS = 5   # fewer: the curve over the first rung's values instead


def _expected_best_section(run: RunTrials, spec: Any, tables_dir: Path, written: list[Path]) -> str:
    """Expected best versus the number of trials (tables/expected_best.*, plots/expected_best.png), or ""."""
    from studies.report.ablation import asha_rungs, values_at_epoch

    b, metric = spec.budget, spec.metric
    full = run.trials[run.trials["epochs"] >= b.max_epochs] if "epochs" in run.trials else run.trials.iloc[:0]
    if len(full) >= MIN_FULL_BUDGET_TRIALS and f"last_{metric}" in full:
        values = full[f"last_{metric}"].to_numpy(dtype=float)
        what = f"each at its value at the full budget ({b.max_epochs} epochs; trials ASHA stopped earlier left out)"
    else:
        rung = asha_rungs(b.max_epochs, b.grace_period, b.reduction_factor)[0]
        values = values_at_epoch(run, metric, rung).groupby(level=0).last().to_numpy(dtype=float)
        what = (f"each at its value at epoch {rung}, the first ASHA rung, which every trial reached (fewer than "
                f"{MIN_FULL_BUDGET_TRIALS} trials ran the full budget)")
    eb = expected_best_curve(values, metric, spec.mode, seed=spec.seed)
    if eb is None:
        return ""
    cap = expected_best.caption(eb, what)
    rows = expected_best.table_rows(eb)
    written += _write_table(rows, tables_dir / "expected_best", cap)
    written.append(expected_best.plot_expected_best(eb, RunFolder(tables_dir.parent).plots))
    return (f"## Expected best versus the number of trials\n\n{cap}\n\n{_display(rows).to_markdown(index=False)}\n\n"
            f"{expected_best.sentence(eb)}\n\n")


def _screening(run: RunTrials, spec: Any, factors: list) -> Any:
    """The design trials of ``search.startup: design`` at the first ASHA rung, analysed as designed (or None)."""
    from studies.report.ablation import asha_rungs
    from studies.report.screening import screening_tables
    from studies.spec.screening_design import spec_design

    design = spec_design(spec) if getattr(spec.search, "startup", None) == "design" else []
    if not design:
        return None
    b = spec.budget
    return screening_tables(run, list(spec.params), design=design, bins=spec.ablation.bins,
                            baseline=spec.ablation.baseline, metric=spec.metric, mode=spec.mode,
                            rung=asha_rungs(b.max_epochs, b.grace_period, b.reduction_factor)[0],
                            factors=[f.name for f in factors], seed=spec.seed)


def _screening_section(screening: Any, spec: Any, tables_dir: Path, written: list[Path]) -> str:
    """One table per factor of the screening design (designed, first rung), and its importance."""
    if screening is None:
        return ""
    s = screening
    out = f"## Screening (designed, epoch {s.rung})\n\n"
    for t in s.tables:
        cap = (f"**{t.factor}**, designed screening — {spec.metric} ({Direction(spec.mode).word} is better) at epoch "
               f"{s.rung} over the {s.n_at_rung} trials of the balanced start design ({s.n_design} rows, "
               f"{s.n_found} measured; `search.startup: design`), {t.scope}: "
               + (f"each level's least-squares mean from one fit of every factor's main effects (treatment coding), "
                  f"95% t-intervals from the residual variance ({s.residual_df} df); "
                  if s.method == "main effects" else
                  "each level's plain mean over the design trials at it (too few rows for a main-effects model), "
                  "95% t-intervals, Welch t-tests; ")
               + f"`delta`: level minus the reference {t.reference} ({t.reference_why}), its "
               "interval at the level Holm tests it at; two-sided t-test, Holm-corrected within the table; "
               "* p_holm < 0.05, ** p_holm < 0.01. Global over the declared space by design, at the first rung only.")
        written += _write_table(t.table, tables_dir / f"screening_{t.factor}", cap)
        short = (f"**{t.factor}**, designed screening — {spec.metric} ({Direction(spec.mode).word} is better) at "
                 f"epoch {s.rung} over the {s.n_at_rung} trials of the balanced start design, {t.scope}; reference "
                 f"{t.reference}; two-sided t-tests, Holm; * p_holm < 0.05, ** p_holm < 0.01. "
                 f"Full note: `tables/screening_{t.factor}.md`.")
        out += f"### {t.factor}\n\n{short}\n\n{_display(t.table).to_markdown(index=False)}\n\n"
    cap = (f"Screening importance at epoch {s.rung}: each factor's main-effect variance (its levels' least-squares "
           f"means, equally weighted) with a 95% interval from {s.n_boot} residual-bootstrap refits, and the share "
           "of refits ranking it first (`first_share`).")
    written += _write_table(s.importance, tables_dir / "screening_importance", cap)
    return out + f"### Importance\n\n{cap}\n\n{_display(s.importance).to_markdown(index=False)}\n\n"


def answer_block(answer: list[str]) -> str:
    """The answer as the report prints it: the direction, then one line per claim group."""
    return "\n".join([answer[0], *(f"- {part}" for part in answer[1:])])


def _interactions_section(an: Analysis, metric: str, tables_dir: Path, written: list[Path]) -> str:
    """Per factor, its differences within each level of the factors that matter
    (tables/interactions_<factor>.*), where any was computed."""
    out = ""
    by_factor: dict[str, list] = {}
    for inter in an.modelled.interactions:
        by_factor.setdefault(inter.factor, []).append(inter.table.assign(other=inter.other))
    for factor, parts in by_factor.items():
        table = pd.concat(parts)[["other", "given", "level", "delta", "delta_lo", "delta_hi", "p", "p_holm", "sig",
                                  "configs", "ref_configs", "withheld"]].reset_index(drop=True)
        cap = _interactions_caption(factor, an, metric)
        written += _write_table(table, tables_dir / f"interactions_{factor}", cap)
        short = (f"**{factor}**, modelled — each level minus the reference within one level (`given`) of another "
                 f"factor that matters; ** p_holm < 0.01, Holm over all of {factor}'s differences. "
                 f"Full note: `tables/interactions_{factor}.md`.")
        out += f"### {factor}, by level of another factor\n\n{short}\n\n{_display(table).to_markdown(index=False)}\n\n"
    return out


def _designed_sections(loo: Any, confirmation: Any, tables_dir: Path, written: list[Path]) -> str:
    """The leave-one-out and confirmation sections (Markdown); their tables are
    written and appended to ``written``. A secondary metric's columns (the
    spec's ``report:``) show as ``<metric> mean``, ``<metric> delta`` (with its
    interval), ``<metric> p_holm``, ``<metric> sig``; one the trials lack, as a line."""

    def shown(table: pd.DataFrame, secondary: list[Any]) -> pd.DataFrame:
        d = _display(table)
        for m in (s.metric for s in secondary):
            d[f"{m} delta"] = [f"{_fmt_num(v)} [{_fmt_num(a, 3)}, {_fmt_num(b, 3)}]" if not math.isnan(v) else ""
                               for v, a, b in zip(table[f"{m} delta"], table[f"{m} delta_lo"], table[f"{m} delta_hi"])]
            d[f"{m} p_holm"] = table[f"{m} p_holm"].map(_fmt_p).fillna("")
            d = d.drop(columns=[f"{m} delta_lo", f"{m} delta_hi"])
        return d

    def write(table: pd.DataFrame, secondary: list[Any], stem: Path, caption: str) -> str:
        d = shown(table, secondary)
        table.to_csv(stem.with_suffix(".csv"), index=False)
        stem.with_suffix(".md").write_text(f"{caption}\n\n{d.to_markdown(index=False)}\n")
        stem.with_suffix(".tex").write_text(latex_table(d, caption, label=f"tab:{stem.name}"))
        written.extend([stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".tex")])
        return d.to_markdown(index=False)

    def notes(result: Any) -> str:
        return "".join(f"\n{line}." for line in getattr(result, "missing", []))

    designed = ""
    if loo is not None:
        skipped = "".join(f"\n- {f}: no row, {why}." for f, why in loo.skipped.items())
        if loo.table is not None and not loo.table.empty:
            md = write(loo.table, getattr(loo, "secondary", []), tables_dir / "leave_one_out", loo.caption)
            designed += f"## Leave-one-out (designed)\n\n{loo.caption}\n\n{md}\n{skipped}{notes(loo)}\n\n"
        else:
            designed += f"## Leave-one-out (designed)\n\nNo leave-one-out run has finished yet.{skipped}\n\n"
    if confirmation is not None and confirmation.summary is not None:
        md = write(confirmation.summary, getattr(confirmation, "secondary", []), tables_dir / "confirmation",
                   confirmation.caption)
        designed += f"## Confirmation (designed)\n\n{confirmation.caption}\n\n{md}\n{notes(confirmation)}\n\n"
    return designed


def _modelled_section(an: Any, spec: Any, tables_dir: Path, written: list[Path]) -> str:
    """One subsection per factor's modelled marginals, and modelled.csv (all of them, long)."""
    modelled, long_m = "", []
    for t in an.modelled.tables:
        cap = _modelled_caption(t, an, spec.metric, spec.mode)
        written += _write_table(t.table, tables_dir / f"modelled_{t.factor}", cap)
        modelled += (f"### {t.factor}\n\n{_modelled_short(t, an, spec.metric, spec.mode)}\n\n"
                     f"{_display(t.table).to_markdown(index=False)}\n\n")
        long_m.append(t.table.assign(factor=t.factor, rung=t.rung, reference=t.reference))
    if not long_m:
        return f"Too few distinct configs at epoch {an.rung} to fit a surrogate.\n\n"
    pd.concat(long_m).to_csv(tables_dir / "modelled.csv", index=False)
    written.append(tables_dir / "modelled.csv")
    return modelled


def _observed_section(ab: AblationResult, tables_dir: Path, written: list[Path]) -> str:
    """One subsection per factor's observed table, and ablation.csv (all of them, long)."""
    observed, long_o = "", []
    for ft in ab.tables:
        cap = _observed_caption(ft, ab)
        written += _write_table(ft.table, tables_dir / f"ablation_{ft.factor}", cap)
        short = (f"**{ft.factor}**, observed — {ab.metric} ({Direction(ab.mode).word} is better) at epoch {ft.rung} "
                 f"({ft.at_rung} of {ab.n_trials} trials reached it), per level over the trials the searcher chose: "
                 f"local, not global. Reference: {ft.reference}. Mean ± 95% t-interval; Mann-Whitney U against the "
                 f"reference, Holm; * p_holm < 0.05, ** p_holm < 0.01. Full note: `tables/ablation_{ft.factor}.md`.")
        observed += f"### {ft.factor}\n\n{short}\n\n{_display(ft.table).to_markdown(index=False)}\n\n"
        long_o.append(ft.table.assign(factor=ft.factor, rung=ft.rung, reference=ft.reference))
    pd.concat(long_o).to_csv(tables_dir / "ablation.csv", index=False)
    written.append(tables_dir / "ablation.csv")
    return observed


def _plots_of_the_trials(run_dir: Path, run: RunTrials, spec: Any, ab: AblationResult, factors: list,
                         confirmation: Any) -> list[Path]:
    tables_dir, plots_dir = RunFolder(run_dir).tables, RunFolder(run_dir).plots
    a = spec.ablation
    written = [plots.plot_factors(run, ab, factors, a.bins, plots_dir)]
    order = run.trials.sort_values(["epochs", f"last_{spec.metric}"], ascending=[False, Direction(spec.mode).ascending])
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
    if confirmation is not None and confirmation.runs is not None and not confirmation.runs.empty:
        written.append(plots.plot_confirmation(confirmation.runs, spec.metric, plots_dir))
    return written


def _in_background(fn: Callable[..., list[Path]], *args: Any) -> Callable[[], list[Path]]:
    """Run ``fn`` in a forked process where fork is safe (Linux, and no other
    thread alive: a run's driver may still hold Ray's or torch's threads), else
    here and now; call the result to wait for it. An error in the child is
    raised here."""
    wait_for_ending_threads()   # the driver's (studies.background): Ray's shutdown, the imports made while Ray started
    if sys.platform != "linux" or threading.active_count() > 1:
        result = fn(*args)
        return lambda: result
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    future = pool.submit(fn, *args)

    def wait() -> list[Path]:
        try:
            return future.result()
        finally:
            pool.shutdown()
    return wait


def _write_tradeoff_report(run_dir: Path, run: RunTrials, spec: Any, info: RunInfo, factors: list,
                           written: list[Path]) -> WrittenReport:
    """The report of a study with several objectives: the Pareto front, what it
    is made of, its confirmation over seeds, and per objective the modelled
    marginals and importance of the single-objective report."""
    from studies.report import tradeoff as to
    from studies.report.confirmation import load_front_confirmation

    folder = RunFolder(run_dir)
    baseline_id = _baseline_trial(run)
    t = to.trade_off(run, metrics=spec.metrics, modes=spec.modes, factors=factors, bins=spec.ablation.bins,
                     max_epochs=spec.budget.max_epochs, baseline_trial=baseline_id)
    answer = to.tradeoff_sentences(t, [p.name for p in spec.params], list(spec.metric_scales))
    sections = _front_sections(t, spec, folder.tables, written)
    confirmation = load_front_confirmation(run_dir, metrics=spec.metrics, modes=spec.modes)
    if confirmation is not None and confirmation.summary is not None:
        written += _write_table(confirmation.summary, folder.tables / "confirmation", confirmation.caption)
        sections += (f"## Confirmation of the front (designed)\n\n{confirmation.caption}\n\n"
                     f"{_display(confirmation.summary).to_markdown(index=False)}\n\n")
        answer.insert(1, f"**Designed, confirmation**: {confirmation.sentence}")
    per_objective, plotted = _objective_sections(run, spec, factors, t, folder, written, answer)
    if confirmation is None:
        answer.append("No designed runs were made: the front comes from single-seed search trials.")
    budget = budget_table(run, run_dir, info)
    written += _write_table(budget, folder.tables / "budget", BUDGET_CAPTION)
    confirmed = confirmation.means if confirmation is not None else None
    if len(t.points):
        written.append(plots.plot_pareto(t.points, spec.metrics, spec.modes, baseline_id, folder.plots,
                                         confirmed=confirmed))
        plotted.insert(0, "`plots/pareto.png`")
    folder.report.write_text(_tradeoff_markdown(spec, run_dir.name, info.status, run, answer,
                                                sections + per_objective, budget, plotted))
    written.append(folder.report)
    return WrittenReport(written, answer, folder.report, list(run.unreadable))


def _front_sections(t: Any, spec: Any, tables_dir: Path, written: list[Path]) -> str:
    """The Pareto front of the search and the levels it is made of (tables/pareto_front.*, pareto_levels.*)."""
    from studies.report import tradeoff as to

    front_cap = to.front_caption(t, spec.budget.max_epochs)
    front = to.front_table(t, [p.name for p in spec.params])
    written += _write_table(front, tables_dir / "pareto_front", front_cap)
    written += _write_table(t.shares, tables_dir / "pareto_levels", to.SHARES_CAPTION)
    return (f"## Pareto front (search phase, full budget)\n\n{front_cap}\n\n{_display(front).to_markdown(index=False)}\n\n"
            f"### Levels on the front\n\n{to.SHARES_CAPTION}\n\n{_display(t.shares).to_markdown(index=False)}\n\n")


def _objective_sections(run: RunTrials, spec: Any, factors: list, t: Any, folder: RunFolder, written: list[Path],
                        answer: list[str]) -> tuple[str, list[str]]:
    """Per objective, its modelled marginals and importance (tables/<metric>/) and its modelled plot; each
    modelled objective's claims are appended to ``answer``. Returns the sections and the plots they drew."""
    from threadpoolctl import threadpool_limits

    from studies.report import tradeoff as to

    a, b = spec.ablation, spec.budget
    per_objective, plotted = "", []
    with threadpool_limits(1):
        for metric, mode, scale in zip(spec.metrics, spec.modes, list(spec.metric_scales)):
            if metric in t.constant:   # nothing to explain: a model of it would fit float noise
                per_objective += (f"## {metric} ({Direction(mode).word} is better)\n\n{to.constant_line(t, metric)} "
                                  "No modelled marginals or importance: there is nothing to explain.\n\n")
                continue
            an = analyse(run, factors, space=list(spec.params), metric=metric, mode=mode, baseline=a.baseline,
                         bins=a.bins, max_epochs=b.max_epochs, grace_period=b.grace_period,
                         reduction_factor=b.reduction_factor, seed=spec.seed, scale=scale)
            per_objective += _objective_section(an, metric, mode, folder.tables / metric, written)
            if an.modelled.tables:
                claims = "; ".join(modelled_claims(an, mode, metric, scale))
                answer.append(f"**Modelled, {metric}** (surrogate marginals over the declared space at epoch "
                              f"{an.rung}, {Direction(mode).word} is better): {claims}.")
                written.append(plots.plot_modelled(an.modelled.tables, metric, an.rung, folder.plots,
                                                   name=f"modelled_{metric}.png"))
                plotted.append(f"`plots/modelled_{metric}.png`")
    return per_objective, plotted


def _objective_section(an: Analysis, metric: str, mode: str, objective_dir: Path, written: list[Path]) -> str:
    """One objective's modelled marginals and importance, written under ``objective_dir``."""
    objective_dir.mkdir(exist_ok=True)
    out = f"## {metric} ({Direction(mode).word} is better): modelled marginals at epoch {an.rung}\n\n"
    out += _modelled_section(an, _ObjectiveView(metric, mode), objective_dir, written)
    imp_caption = _importance_caption(an)
    written += _write_table(an.importance, objective_dir / "importance", imp_caption)
    return out + f"### Parameter importance for {metric}\n\n{imp_caption}\n\n{_display(an.importance).to_markdown(index=False)}\n\n"


def _tradeoff_markdown(spec: Any, run_name: str, status: str, run: RunTrials, answer: list[str], sections: str,
                       budget: pd.DataFrame, plotted: list[str]) -> str:
    rung_counts = ", ".join(f"epoch {e}: {n}" for e, n in sorted(run.history.groupby("epoch")["trial_id"].nunique().items()))
    return (f"# {spec.name}: trade-off report\n\n{' '.join(answer)}\n\n"
            f"*Run `{run_name}` ({status}); {len(run.trials)} trials; trials reaching each epoch: {rung_counts}. "
            f"Question: {one_line(spec.description) or '(no description in the spec)'}*\n\n"
            + "".join(f"**Left out, unreadable:** {line}\n\n" for line in run.unreadable)
            + f"{EVIDENCE_LEGEND}\n\n" + sections
            + f"## Budget\n\n{BUDGET_CAPTION}\n\n{_display(budget).to_markdown(index=False)}\n\n"
            + "Plots: " + ", ".join(plotted)
            + ". All trials: `tables/trials.md`; per objective: `tables/<metric>/`.\n")


@dataclass(frozen=True)
class _ObjectiveView:
    """A spec seen through one of its objectives (what the per-table captions read)."""

    metric: str
    mode: str


def _baseline_trial(run: RunTrials) -> str | None:
    """The search's trial 0: the baseline config, which the searcher always measures first."""
    if run.trials.empty or "optuna_number" not in run.trials:
        return None
    first = run.trials[run.trials["optuna_number"] == 0]
    return str(first.iloc[0]["trial_id"]) if len(first) else None
