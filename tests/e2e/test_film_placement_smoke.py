"""`python studies/run.py film_placement --smoke` end to end, in a subprocess (family hand_pose)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli


def test_film_placement_smoke(tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli("film_placement", "--smoke", "--storage", str(tmp_path), "--cache-dir", str(cache_dir),
                   "--num-cpus", "2", "--run", "smoke-e2e")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "film_placement" / "smoke-e2e"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["invocation"]["smoke"] is True
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == 4
    assert set(table["status"]) <= {"complete", "stopped by ASHA"}
    assert table["best_val_error_mm"].notna().all()
    for param in ['film_blocks', 'lr']:
        assert table[param].notna().all(), param
    assert (table.loc[table["status"] == "complete", "epochs"] == 2).all()
    # film_blocks stays a string ("0,1" is not a number) and film_dim exists only with FiLM
    for trial_dir in run_dir.glob("trial_*"):
        params = json.loads((trial_dir / "params.json").read_text())
        assert isinstance(params["film_blocks"], str)
        assert ("film_dim" in params) == (params["film_blocks"] != "none")
    assert (run_dir / "tables" / "ablation.md").read_text().startswith("# film_placement: ablation report")
