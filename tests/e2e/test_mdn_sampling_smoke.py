"""`python studies/run.py mdn_sampling --smoke` end to end, in a subprocess (family mdn_sampling, three
objectives): the shared model is built once and cached, the trials only generate, the trade-off report is written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli


def test_mdn_sampling_smoke(tmp_path: Path, cache_dir: Path) -> None:
    args = ["mdn_sampling", "--smoke", "--storage", str(tmp_path), "--cache-dir", str(cache_dir), "--num-cpus", "2"]
    proc = run_cli(*args, "--run", "first")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "building what every trial shares" in proc.stderr
    assert len(list(cache_dir.glob("mdn_sampling-shared-*.npz"))) == 1
    run_dir = tmp_path / "mdn_sampling" / "first"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == 6 and set(table["status"]) <= {"complete", "stopped by ASHA"}
    history = [json.loads(line) for path in run_dir.glob("trial_*/result.json") for line in path.read_text().splitlines()]
    assert all({"gen_jerk_ratio", "gen_diversity", "emotion_consistency", "probe_accuracy"} <= set(r) for r in history)
    report = (run_dir / "tables" / "ablation.md").read_text()
    assert report.startswith("# mdn_sampling: trade-off report") and "Pareto front" in report
    assert (run_dir / "plots" / "pareto.png").is_file() or "No search trial ran the full budget" in report
    # a second run reads the shared model from the cache instead of training it again
    again = run_cli(*args, "--run", "second")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "building what every trial shares" not in again.stderr
