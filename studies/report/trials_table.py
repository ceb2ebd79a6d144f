"""tables/trials.csv and trials.md: one row per trial, the way ASHA and Optuna
rank them: trials that ran more epochs first, then by the value of their last
epoch (so the first row is Optuna's best trial, at the full budget)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from studies.runs.trials import RunTrials
from studies.spec.direction import Direction


def trials_table(run: RunTrials, *, metric: str, mode: str) -> pd.DataFrame:
    if run.trials.empty:
        return run.trials
    cols = ["trial_id", *run.params, f"best_{metric}", f"last_{metric}", "epochs", "status", "error"]
    table = run.trials[[c for c in cols if c in run.trials.columns]]
    return table.sort_values(["epochs", f"last_{metric}"], ascending=[False, Direction(mode).ascending],
                             na_position="last").reset_index(drop=True)


def write_trials_table(run: RunTrials, tables_dir: Path, *, metric: str, mode: str) -> list[Path]:
    tables_dir.mkdir(parents=True, exist_ok=True)
    table = trials_table(run, metric=metric, mode=mode)
    csv, md = tables_dir / "trials.csv", tables_dir / "trials.md"
    table.to_csv(csv, index=False)
    shown = table.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    shown = shown.fillna("").astype(str).replace({"None": "", "nan": ""})
    direction = Direction(mode).word
    md.write_text(
        f"# Trials ({len(table)})\n\n"
        f"One row per trial ({direction} `{metric}` is better): trials that ran more epochs first, then by "
        f"`last_{metric}`, the value at the last epoch run (for a trial at the full budget, the value Optuna holds "
        f"and that \"best\" means everywhere else). `best_{metric}` is the trial's best single epoch, for reference "
        f"only. Blank parameters were not sampled (conditional).\n\n"
        + (shown.to_markdown(index=False) if not shown.empty else "(no trials yet)") + "\n"
    )
    return [csv, md]
