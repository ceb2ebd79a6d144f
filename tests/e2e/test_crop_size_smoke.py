"""`python studies/run.py crop_size --smoke` end to end, in a subprocess (family hand_pose)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli


def test_crop_size_smoke(tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli("crop_size", "--smoke", "--storage", str(tmp_path), "--cache-dir", str(cache_dir),
                   "--num-cpus", "2", "--run", "smoke-e2e")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "crop_size" / "smoke-e2e"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["invocation"]["smoke"] is True
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == 4
    assert set(table["status"]) <= {"complete", "stopped by ASHA"}
    assert table["best_val_error_mm"].notna().all()
    for param in ['crop_method', 'cube_size', 'lr']:
        assert table[param].notna().all(), param
    assert (table.loc[table["status"] == "complete", "epochs"] == 2).all()
    # conditional parameter: bbox_padding is only sampled for the bounding-box crop
    assert table.loc[table["crop_method"] == "cube", "bbox_padding"].isna().all()
    assert table.loc[table["crop_method"] == "bbox", "bbox_padding"].between(0.0, 0.4).all()
    assert set(table["cube_size"]) <= {150.0, 200.0, 250.0, 300.0, 350.0}
    assert (run_dir / "tables" / "ablation.md").read_text().startswith("# crop_size: ablation report")
