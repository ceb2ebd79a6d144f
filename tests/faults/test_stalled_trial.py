"""A trial that stops reporting (a real hang in the trainable) is ended after
budget.report_timeout_s and failed with that reason; the rest of the study goes
on (studies/tune/stall_guard.py; the retry of a stalled trial is in
tests/studies/tune/test_stall_guard.py). The limit leaves room for a worker's start
on a loaded machine: the clock runs from when the trial is RUNNING."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli, user_study

HANGS = """
    import time

    from trainables.api import report_epoch


    def train(config):
        for epoch in range(1, config["max_epochs"] + 1):
            if config["hang"] == "yes" and epoch == 2:
                time.sleep(10**6)   # a dead data loader, a deadlocked collective
            report_epoch({"loss": 1.0 / epoch}, epoch=epoch)
"""


def test_a_trial_that_hangs_is_ended_and_the_study_goes_on(tmp_path: Path, cache_dir: Path) -> None:
    spec = user_study(tmp_path, "hangs", HANGS, "metric: loss\nmode: min\nresources: {cpus_per_trial: 1}\n"
                      "search: {sampler: random, seed: 1}\n"
                      "budget: {max_epochs: 3, grace_period: 3, num_samples: 5, max_failures: 0, report_timeout_s: 20}\n",
                      space="hang: {type: categorical, choices: ['no', 'yes']}\n")
    proc = run_cli(str(spec), "--storage", str(tmp_path / "res"), "--cache-dir", str(cache_dir), "--run", "r",
                   "--num-cpus", "2", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "res" / "hangs" / "r"
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    hung, fine = table[table["hang"] == "yes"], table[table["hang"] == "no"]
    assert len(hung) and len(fine), "the sampler drew one kind only: the test proves nothing"
    assert set(fine["status"]) == {"complete"} and set(fine["epochs"]) == {3}
    assert set(hung["status"]) == {"failed"} and set(hung["epochs"]) == {1}, hung.to_string()
    assert all(e.startswith("StalledTrial: no result for ") and "budget.report_timeout_s" in e for e in hung["error"])
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
