"""The designed stage's record on disk, so the stage can stop and continue.

Its plan is ``designed/candidates.json`` (configs, seeds); each run of a
(config label, seed) is one Tune trial folder in ``designed/``, done when its
results reach the full budget. A stopped stage continues with the pairs not
yet done; the folders of runs it left unfinished go to
``designed/interrupted/`` (kept for the record, out of the tables). A
(label, seed) that ran twice to the end is refused, never pooled: two runs of
one seed counted as two seeds is pseudo-replication.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from studies.errors import UserError
from studies.runs.run_folder import RunFolder
from studies.runs.trials import read_results, trial_params_files

RUN_COLUMNS = ["config", "seed", "epochs", "trial_dir"]


def read_plan(folder: RunFolder) -> dict[str, Any] | None:
    """The plan the stage was started with (None: no stage started)."""
    path = folder.candidates
    return json.loads(path.read_text()) if path.is_file() else None


def planned_pairs(plan: dict[str, Any]) -> list[tuple[str, int]]:
    """Every (config label, seed) the plan runs, in run order."""
    seeds = [int(s) for s in plan["seed_values"]]
    return [(c["label"], s) for c in plan["configs"] for s in seeds[:int(c["seeds"])]]


def _last_epoch(rows: list[dict[str, Any]], metrics: list[str]) -> tuple[int, dict[str, float]]:
    epochs, values = 0, {m: math.nan for m in metrics}
    for r in rows:
        if "epoch" in r and int(r["epoch"]) >= epochs:
            epochs = int(r["epoch"])
            values = {m: float(r.get(m, math.nan)) for m in metrics}
    return epochs, values


def read_runs(designed_dir: Path, metrics: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per trial folder directly in ``designed_dir``: its config label,
    seed, last epoch, folder name, and each of ``metrics`` at that epoch."""
    rows = []
    for params_file in trial_params_files(designed_dir):
        try:
            config = json.loads(params_file.read_text())
        except json.JSONDecodeError:   # being written (a report of a running stage): no result yet either
            continue
        epochs, values = _last_epoch(read_results(params_file.parent), list(metrics))
        rows.append({"config": config.get("confirm_label", "?"), "seed": config.get("seed"), "epochs": epochs,
                     "trial_dir": params_file.parent.name, **values})
    return pd.DataFrame(rows, columns=[*RUN_COLUMNS, *metrics])


def complete_runs(designed_dir: Path, metrics: list[str] | tuple[str, ...], max_epochs: int) -> pd.DataFrame:
    """The runs that reached the full budget, each (label, seed) once; a pair
    that ran twice is refused (see the module's docstring)."""
    runs = read_runs(designed_dir, metrics)
    runs = runs[runs["epochs"] >= max_epochs]
    twice = runs[runs.duplicated(["config", "seed"], keep=False)]
    if not twice.empty:
        first = twice.iloc[0]
        dirs = ", ".join(twice[(twice["config"] == first["config"]) & (twice["seed"] == first["seed"])]["trial_dir"])
        raise UserError(f"{designed_dir}: config {first['config']} with seed {first['seed']} ran to the end more than "
                        f"once ({dirs}); the designed tables count each seed once: move all but one of those folders "
                        "out of the run folder, then --report")
    return runs


def continue_stage(folder: RunFolder, max_epochs: int, *, set_aside: bool = True) -> set[tuple[str, int]]:
    """Before the stage (re)starts: the (label, seed) pairs already done; every
    unfinished run's folder moved to ``designed/interrupted/`` (``set_aside``;
    a bucket's mirror leaves them: the bucket's copy wins, and the tables skip
    them either way)."""
    runs = read_runs(folder.designed)
    unfinished = runs[runs["epochs"] < max_epochs] if set_aside else runs.iloc[:0]
    if not unfinished.empty:
        folder.designed_interrupted.mkdir(exist_ok=True)
    for name in unfinished["trial_dir"]:
        (folder.designed / name).rename(folder.designed_interrupted / name)
    done = complete_runs(folder.designed, (), max_epochs)
    return {(str(c), int(s)) for c, s in zip(done["config"], done["seed"])}


def interrupted_runs(folder: RunFolder) -> pd.DataFrame:
    """The runs a stopped stage left unfinished (for the budget: their epochs were spent)."""
    return read_runs(folder.designed_interrupted)
