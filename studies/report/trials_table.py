"""tables/trials.csv and trials.md: one row per trial, best first."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from studies.report.trials import RunTrials


def trials_table(run: RunTrials, *, metric: str, mode: str) -> pd.DataFrame:
    if run.trials.empty:
        return run.trials
    cols = ["trial_id", *run.params, f"best_{metric}", f"last_{metric}", "epochs", "status", "error"]
    table = run.trials[[c for c in cols if c in run.trials.columns]]
    return table.sort_values(f"best_{metric}", ascending=(mode == "min"), na_position="last").reset_index(drop=True)


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
    direction = "lower" if mode == "min" else "higher"
    md.write_text(
        f"# Trials ({len(table)})\n\n"
        f"One row per trial, best `{metric}` first ({direction} is better). `best_` is the best epoch, "
        f"`last_` the last epoch run; blank parameters were not sampled (conditional).\n\n"
        + (shown.to_markdown(index=False) if not shown.empty else "(no trials yet)") + "\n"
    )
    return [csv, md]
