"""`python studies/run.py grunet_arch --smoke` end to end, in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli

SMOKE_TRIALS = 5     # studies/grunet_arch.yaml, smoke.budget.num_samples
SMOKE_EPOCHS = 3


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    storage = tmp_path_factory.mktemp("results")
    proc = run_cli("grunet_arch", "--smoke", "--storage", str(storage), "--cache-dir", str(cache_dir),
                   "--num-cpus", "2", "--run", "smoke-e2e")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage / "grunet_arch" / "smoke-e2e"


def test_trials_table(smoke_run: Path) -> None:
    table = pd.read_csv(smoke_run / "tables" / "trials.csv")
    assert len(table) == SMOKE_TRIALS
    assert set(table["status"]) <= {"complete", "stopped by ASHA"}
    assert (table["status"] == "complete").any()
    assert (table.loc[table["status"] == "complete", "epochs"] == SMOKE_EPOCHS).all()
    assert table["best_val_mse"].notna().all() and (table["best_val_mse"] > 0).all()
    # attention is sampled only for seq2seq trials
    assert table.loc[table["seq2seq"] == False, "attention"].isna().all()  # noqa: E712
    assert json.loads((smoke_run / "run.json").read_text())["status"] == "finished"


def test_every_epoch_reports_mse_and_r2(smoke_run: Path) -> None:
    for trial_dir in smoke_run.glob("trial_*"):
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]
        assert rows
        for row in rows:
            assert isinstance(row["val_mse"], float) and row["val_mse"] > 0
            assert isinstance(row["val_r2"], float) and row["val_r2"] <= 1.0
            assert 0.0 <= row["val_neg_frac"] <= 1.0


def test_ablation_report(smoke_run: Path) -> None:
    md = (smoke_run / "tables" / "ablation.md").read_text()
    assert md.startswith("# grunet_arch: ablation report")
    for factor in ("hidden_size", "packed", "negrelu_weight", "seq2seq", "attention", "max_train_length"):
        assert f"## {factor}" in md
