"""tables/trials.csv and trials.md: every objective of a trade-off study (best_
and last_ of each, ranked by the first), a single-objective study's table as it
was."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from studies.report.trials_table import trials_table, write_trials_table
from studies.runs.trials import RunTrials


def _run() -> RunTrials:
    """Three trials; ``loss`` (min) is the first objective, ``acc`` (max) the second.
    The trial table holds only the first objective's columns, as load_trials writes it."""
    curves = {  # trial: (loss per epoch, acc per epoch)
        "a": ([3.0, 2.0, 2.5], [0.2, 0.6, 0.5]),
        "b": ([4.0, 1.0, 1.5], [0.1, 0.3, 0.4]),
        "c": ([5.0], [0.9]),                      # stopped after one epoch
    }
    trials, history = [], []
    for tid, (loss, acc) in curves.items():
        trials.append({"trial_id": tid, "status": "complete" if len(loss) == 3 else "stopped by ASHA",
                       "epochs": len(loss), "best_loss": min(loss), "last_loss": loss[-1], "lr": 0.1, "seed": 0,
                       "error": None})
        history += [{"trial_id": tid, "epoch": e + 1, "loss": lo, "acc": ac} for e, (lo, ac) in enumerate(zip(loss, acc))]
    return RunTrials(pd.DataFrame(trials), pd.DataFrame(history), ["lr"])


def test_every_objective_has_its_best_and_last_columns_ranked_by_the_first() -> None:
    table = trials_table(_run(), metric="loss", mode="min", metrics=["loss", "acc"], modes=["min", "max"])
    assert list(table.columns) == ["trial_id", "lr", "best_loss", "last_loss", "best_acc", "last_acc", "epochs",
                                   "status", "error"]
    assert list(table["trial_id"]) == ["b", "a", "c"]           # 3 epochs first, then by last_loss (1.5 < 2.5)
    rows = table.set_index("trial_id")
    assert rows.loc["a", ["best_acc", "last_acc"]].tolist() == pytest.approx([0.6, 0.5])   # max is best for acc
    assert rows.loc["b", ["best_acc", "last_acc"]].tolist() == pytest.approx([0.4, 0.4])
    assert rows.loc["c", ["best_acc", "last_acc"]].tolist() == pytest.approx([0.9, 0.9])
    assert rows.loc["b", ["best_loss", "last_loss"]].tolist() == pytest.approx([1.0, 1.5])


def test_trials_md_shows_both_objectives(tmp_path: Path) -> None:
    csv, md = write_trials_table(_run(), tmp_path, metric="loss", mode="min", metrics=["loss", "acc"],
                                 modes=["min", "max"])
    text = md.read_text()
    header = [c.strip() for c in next(line for line in text.splitlines() if line.startswith("| trial_id")).split("|")]
    assert header[1:-1] == ["trial_id", "lr", "best_loss", "last_loss", "best_acc", "last_acc", "epochs", "status",
                            "error"]
    assert "lower `loss` is better, higher `acc` is better" in text and "then by `last_loss` (the first objective" in text
    assert list(pd.read_csv(csv).columns)[2:6] == ["best_loss", "last_loss", "best_acc", "last_acc"]


def test_a_single_objective_table_is_unchanged(tmp_path: Path) -> None:
    run = _run()
    table = trials_table(run, metric="loss", mode="min")
    assert list(table.columns) == ["trial_id", "lr", "best_loss", "last_loss", "epochs", "status", "error"]
    assert trials_table(run, metric="loss", mode="min", metrics=["loss"], modes=["min"]).equals(table)
    _, md = write_trials_table(run, tmp_path, metric="loss", mode="min")
    assert md.read_text().startswith(
        "# Trials (3)\n\nOne row per trial (lower `loss` is better): trials that ran more epochs first, then by "
        "`last_loss`, the value at the last epoch run (for a trial at the full budget, the value Optuna holds and "
        "that \"best\" means everywhere else). `best_loss` is the trial's best single epoch, for reference only. "
        "Blank parameters were not sampled (conditional).\n\n")
    assert "acc" not in md.read_text()


def test_mismatched_objectives_are_refused() -> None:
    with pytest.raises(ValueError):
        trials_table(_run(), metric="loss", mode="min", metrics=["loss", "acc"], modes=["min"])
