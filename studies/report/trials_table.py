"""tables/trials.csv and trials.md: one row per trial, the way ASHA and Optuna
rank them: trials that ran more epochs first, then by the value of their last
epoch (so the first row is Optuna's best trial, at the full budget).

A study with several objectives shows each of them, ``best_`` and ``last_`` per
objective in the spec's order; the rows are ranked by the first objective (the
one progress lines show). The trial table holds the first objective's columns;
the others are read from each trial's history here."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from studies.runs.trials import RunTrials
from studies.spec.direction import Direction


def _objectives(metric: str, mode: str, metrics: list[str] | None, modes: list[str] | None) -> list[tuple[str, str]]:
    """(metric, mode) per objective, the first being ``metric``."""
    pairs = list(zip(metrics, modes)) if metrics and modes else [(metric, mode)]
    if len(pairs) != len(metrics or [metric]):
        raise ValueError(f"{len(metrics or [])} metrics but {len(modes or [])} modes")
    if pairs[0][0] != metric:
        pairs = [(metric, mode), *[(m, d) for m, d in pairs if m != metric]]
    return pairs


def _history_columns(run: RunTrials, metric: str, mode: str) -> pd.DataFrame:
    """Per trial: the best single epoch's value and the last epoch's value of ``metric``
    (epochs that reported it as a finite number for best; the last reported for last)."""
    h = run.history
    if h.empty or metric not in h.columns:
        return pd.DataFrame({f"best_{metric}": math.nan, f"last_{metric}": math.nan}, index=run.trials["trial_id"])
    reported = h[["trial_id", "epoch", metric]].dropna(subset=[metric]).sort_values("epoch", kind="stable")
    by_trial = reported.groupby("trial_id")[metric]
    d = Direction(mode)
    best = by_trial.agg(lambda v: d.best(v.astype(float)))
    return pd.DataFrame({f"best_{metric}": best, f"last_{metric}": by_trial.last()}).reindex(run.trials["trial_id"])


def trials_table(run: RunTrials, *, metric: str, mode: str, metrics: list[str] | None = None,
                 modes: list[str] | None = None) -> pd.DataFrame:
    """The trials ranked by epochs reached, then the first objective's last value.
    ``metrics``/``modes``: every objective of a study with several (their ``best_``
    and ``last_`` columns follow the first's); leave out for one objective."""
    if run.trials.empty:
        return run.trials
    objectives = _objectives(metric, mode, metrics, modes)
    trials = run.trials
    for m, d in objectives[1:]:
        extra = _history_columns(run, m, d)
        trials = trials.drop(columns=[c for c in extra.columns if c in trials.columns])
        trials = trials.join(extra, on="trial_id")
    cols = ["trial_id", *run.params, *[c for m, _ in objectives for c in (f"best_{m}", f"last_{m}")],
            "epochs", "status", "error"]
    table = trials[[c for c in cols if c in trials.columns]]
    return table.sort_values(["epochs", f"last_{metric}"], ascending=[False, Direction(mode).ascending],
                             na_position="last").reset_index(drop=True)


def write_trials_table(run: RunTrials, tables_dir: Path, *, metric: str, mode: str, metrics: list[str] | None = None,
                       modes: list[str] | None = None) -> list[Path]:
    tables_dir.mkdir(parents=True, exist_ok=True)
    table = trials_table(run, metric=metric, mode=mode, metrics=metrics, modes=modes)
    objectives = _objectives(metric, mode, metrics, modes)
    csv, md = tables_dir / "trials.csv", tables_dir / "trials.md"
    table.to_csv(csv, index=False)
    shown = table.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    shown = shown.fillna("").astype(str).replace({"None": "", "nan": ""})
    if len(objectives) == 1:
        intro = (f"One row per trial ({Direction(mode).word} `{metric}` is better): trials that ran more epochs "
                 f"first, then by `last_{metric}`, the value at the last epoch run (for a trial at the full budget, "
                 f"the value Optuna holds and that \"best\" means everywhere else). `best_{metric}` is the trial's "
                 f"best single epoch, for reference only.")
    else:
        dirs = ", ".join(f"{Direction(d).word} `{m}` is better" for m, d in objectives)
        intro = (f"One row per trial ({dirs}), every objective shown: `last_` is the value at the last epoch run "
                 f"(for a trial at the full budget, the value Optuna holds and the Pareto front compares), `best_` "
                 f"the trial's best single epoch of that objective alone, for reference only. Trials that ran more "
                 f"epochs first, then by `last_{metric}` (the first objective; the trials have no single order "
                 f"over several objectives: the trade-off report's Pareto front compares them).")
    md.write_text(
        f"# Trials ({len(table)})\n\n{intro} Blank parameters were not sampled (conditional).\n\n"
        + (shown.to_markdown(index=False) if not shown.empty else "(no trials yet)") + "\n"
    )
    return [csv, md]
