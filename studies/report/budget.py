"""What the study cost, and what ASHA saved against running every trial to the end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from studies.runs.designed_record import interrupted_runs, read_runs
from studies.runs.run_folder import RunFolder, RunInfo
from studies.runs.trials import RunTrials, read_results


def _trial_seconds(run_dir: Path, trial_dir: str) -> float:
    last = 0.0
    for r in read_results(run_dir / trial_dir):
        try:
            last = max(last, float(r.get("time_total_s", 0.0)))
        except (TypeError, ValueError):
            continue
    return last


def _designed_cost(run_dir: Path, max_epochs: int) -> tuple[int, int, float, int] | None:
    """The designed stage's runs at the full budget; the epochs and trial time
    of every run, those a stopped stage left unfinished included; how many of
    those there were (in ``designed/``, or set aside when it continued)."""
    folder = RunFolder(run_dir)
    if not folder.designed.is_dir():
        return None
    runs, set_aside = read_runs(folder.designed), interrupted_runs(folder)
    epochs = int(runs["epochs"].sum()) + int(set_aside["epochs"].sum())
    secs = sum(_trial_seconds(folder.designed, d) for d in runs["trial_dir"])
    secs += sum(_trial_seconds(folder.designed_interrupted, d) for d in set_aside["trial_dir"])
    full = int((runs["epochs"] >= max_epochs).sum())
    unfinished = int(((runs["epochs"] > 0) & (runs["epochs"] < max_epochs)).sum()) + len(set_aside)
    return full, epochs, secs, unfinished


def budget_table(run: RunTrials, run_dir: Path, info: RunInfo) -> pd.DataFrame:
    max_epochs = info.max_epochs
    n = len(run.trials)
    spent = int(run.trials["epochs"].sum()) if n else 0
    full = n * max_epochs
    seconds = sum(_trial_seconds(run_dir, d) for d in run.trials.get("trial_dir", []))
    res = info.resources
    gpus, cpus = float(res.get("gpus_per_trial", 0) or 0), float(res.get("cpus_per_trial", 1) or 1)
    per_epoch = seconds / spent if spent else 0.0
    rows = [
        ("trials", n, ""),
        ("trial-epochs spent", spent, "sum of epochs over trials"),
        ("trial-epochs without early stopping", full, f"{n} trials x {max_epochs} epochs"),
        ("saved by ASHA", f"{(1 - spent / full) * 100:.1f}%" if full else "", f"{full - spent} trial-epochs"),
        ("trial time", f"{seconds / 60:.1f} min", "sum of trial run times"),
        ("estimated time saved", f"{(full - spent) * per_epoch / 60:.1f} min", f"at {per_epoch:.2f} s per trial-epoch"),
        ("wall time", f"{info.wall_s / 60:.1f} min", f"up to {info.max_concurrent or '?'} trials at once"),
        ("CPU-hours", f"{seconds * cpus / 3600:.3f}", f"{cpus:g} CPU per trial"),
    ]
    designed = _designed_cost(run_dir, max_epochs)
    if designed is not None:
        runs, epochs, secs, unfinished = designed
        again = f"; and {unfinished} run(s) a stop left unfinished, their epochs counted" if unfinished else ""
        rows.append(("designed runs at the full budget (confirmation, leave-one-out)", runs,
                     f"{epochs} trial-epochs, {secs / 60:.1f} min of trial time{again}"))
        designed_s = info.stages().get("designed")
        if designed_s is not None:
            rows.append(("designed stage wall time", f"{designed_s / 60:.1f} min", "full budget, no early stopping"))
        seconds += secs
        rows.append(("CPU-hours, all stages", f"{seconds * cpus / 3600:.3f}", "search + designed runs"))
    if gpus > 0:
        rows.append(("GPU-hours", f"{seconds * gpus / 3600:.3f}", f"{gpus:g} GPU per trial"))
    return pd.DataFrame(rows, columns=["quantity", "value", "how"])
