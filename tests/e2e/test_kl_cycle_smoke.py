"""`python studies/run.py kl_cycle --smoke` end to end, in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli

STUDY = "kl_cycle"
SMOKE_TRIALS = 5


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    storage = tmp_path_factory.mktemp("results")
    proc = run_cli(STUDY, "--smoke", "--storage", str(storage), "--cache-dir", str(cache_dir),
                   "--num-cpus", "2", "--run", "smoke-e2e")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage / STUDY / "smoke-e2e"


def test_trials_and_report(smoke_run: Path) -> None:
    table = pd.read_csv(smoke_run / "tables" / "trials.csv")
    assert len(table) == SMOKE_TRIALS
    assert set(table["status"]) <= {"complete", "stopped by ASHA"}
    assert (table["status"] == "complete").any()
    assert table["best_val_psnr"].notna().all() and (table["best_val_psnr"] > 5).all()
    assert (smoke_run / "tables" / "ablation.md").read_text().startswith(f"# {STUDY}: ablation report")
    assert json.loads((smoke_run / "run.json").read_text())["status"] == "finished"


def test_every_epoch_reports_the_psnr_curve(smoke_run: Path) -> None:
    """val_psnr and one scalar per generated frame (clip_length 4 in the smoke
    block: frames 01..03), finite, every epoch of every trial."""
    frames = [f"val_psnr_frame_{k:02d}" for k in (1, 2, 3)]
    for trial_dir in smoke_run.glob("trial_*"):
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]
        assert rows
        for row in rows:
            assert "val_psnr_frame_04" not in row
            values = [row[k] for k in frames]
            assert all(isinstance(v, float) and 5 < v < 100 for v in values)
            assert row["val_psnr"] == pytest.approx(sum(values) / len(values), rel=1e-6)


def test_conditional_cycle_knobs(smoke_run: Path) -> None:
    """Trials without annealing never sample the cycle and ratio."""
    table = pd.read_csv(smoke_run / "tables" / "trials.csv")
    assert set(table["kl_anneal_type"]) <= {"none", "monotonic", "cyclical"}
    none = table[table["kl_anneal_type"] == "none"]
    assert none["kl_anneal_cycle"].isna().all() and none["kl_anneal_ratio"].isna().all()
    annealed = table[table["kl_anneal_type"] != "none"]
    assert annealed["kl_anneal_cycle"].notna().all() and annealed["kl_anneal_cycle"].isin([2, 4, 6, 8]).all()
