"""`python studies/run.py augmentation --smoke` end to end, in a subprocess (family hand_pose)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli


def test_augmentation_smoke(tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli("augmentation", "--smoke", "--storage", str(tmp_path), "--cache-dir", str(cache_dir),
                   "--num-cpus", "2", "--run", "smoke-e2e")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "augmentation" / "smoke-e2e"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["invocation"]["smoke"] is True
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == 4
    assert set(table["status"]) <= {"complete", "stopped by ASHA"}
    assert table["best_val_error_mm"].notna().all()
    for param in ['train_aug', 'pca_aug', 'lr']:
        assert table[param].notna().all(), param
    assert (table.loc[table["status"] == "complete", "epochs"] == 2).all()
    # aug_random only exists when the training images are augmented
    assert table.loc[table["train_aug"] == "none", "aug_random"].isna().all()
    assert table.loc[table["train_aug"] != "none", "aug_random"].notna().all()
    assert (run_dir / "tables" / "ablation.md").read_text().startswith("# augmentation: ablation report")
