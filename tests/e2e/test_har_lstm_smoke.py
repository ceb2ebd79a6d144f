"""`python studies/run.py har_lstm --smoke` end to end, in a subprocess (family hand_action)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli


def test_har_lstm_smoke(tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli("har_lstm", "--smoke", "--storage", str(tmp_path), "--cache-dir", str(cache_dir),
                   "--num-cpus", "2", "--run", "smoke-e2e")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "har_lstm" / "smoke-e2e"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["invocation"]["smoke"] is True
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == 4
    assert set(table["status"]) <= {"complete", "stopped by ASHA"}
    assert table["best_val_accuracy"].notna().all()
    for param in ['pooling', 'pca_dim', 'hidden_size', 'lr']:
        assert table[param].notna().all(), param
    assert (table.loc[table["status"] == "complete", "epochs"] == 3).all()
    assert table["best_val_accuracy"].between(0.0, 1.0).all()
    assert (run_dir / "tables" / "ablation.md").read_text().startswith("# har_lstm: ablation report")
