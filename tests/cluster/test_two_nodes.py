"""Two nodes (ray.cluster_utils.Cluster): trials land on both, all results reach the run folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from studies.runs.trials import load_trials

SCRIPT = Path(__file__).with_name("two_node_script.py")


def test_trials_spread_over_two_nodes(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["concurrency"] == 2 and summary["peak"] == 2
    run_dir = Path(summary["run_dir"])
    rows = [json.loads(p.read_text().splitlines()[-1]) for p in run_dir.glob("trial_*/result.json")]
    assert len(rows) == 4
    used = {summary["nodes"][r["node_id"]] for r in rows}
    assert used == {"head", "worker"}
    trials = load_trials(run_dir, metric="score", mode="max", params=["x"], max_epochs=1)
    assert isinstance(trials.trials, pd.DataFrame) and len(trials.trials) == 4
    assert (trials.trials["status"] == "complete").all()
