"""`python studies/run.py mdn_ramp --smoke` end to end, in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, str]:
    storage = tmp_path_factory.mktemp("results")
    # 8 trials so that ASHA has something to stop (grace 1, reduction 3).
    proc = run_cli("mdn_ramp", "--smoke", "--storage", str(storage), "--cache-dir", str(cache_dir),
                   "--num-samples", "8", "--run", "smoke-e2e", "--num-cpus", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage / "mdn_ramp" / "smoke-e2e", proc.stdout


def test_run_folder_has_everything(smoke_run: tuple[Path, str]) -> None:
    run_dir, stdout = smoke_run
    for name in ("run.json", "spec.yaml", "search_space.yaml", "optuna.db", "tuner.pkl", "tables/trials.csv", "tables/trials.md"):
        assert (run_dir / name).is_file(), name
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished"
    assert info["invocation"]["smoke"] is True
    assert "wrote" in stdout and str(run_dir) in stdout


def test_trials_table(smoke_run: tuple[Path, str]) -> None:
    run_dir, _ = smoke_run
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == 8
    assert set(table["status"]) <= {"complete", "stopped by ASHA"}
    assert (table["status"] == "stopped by ASHA").any(), "ASHA stopped nothing"
    assert (table["status"] == "complete").any()
    assert (table.loc[table["status"] == "complete", "epochs"] == 4).all()
    assert (table.loc[table["status"] == "stopped by ASHA", "epochs"] < 4).all()
    assert table["best_val_mse"].is_monotonic_increasing  # best first
    # Conditional parameters: `constant` never samples the ramp knobs.
    constant = table[table["ramp_shape"] == "constant"]
    assert constant["initial_weight"].isna().all()
    md = (run_dir / "tables" / "trials.md").read_text()
    assert md.startswith("# Trials (8)") and "| trial_id" in md


def test_optuna_study_tells_the_truth(smoke_run: tuple[Path, str]) -> None:
    run_dir, _ = smoke_run
    study = optuna.load_study(study_name="mdn_ramp", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    trials = study.get_trials()
    assert len(trials) == 8
    table = pd.read_csv(run_dir / "tables" / "trials.csv").set_index("trial_id")
    states = {t.state.name for t in trials}
    assert states <= {"COMPLETE", "PRUNED"} and "PRUNED" in states
    for t in trials:
        tune_id = t.user_attrs["tune_trial_id"]
        epochs = int(table.loc[tune_id, "epochs"])
        # Every epoch's value is an intermediate value, the last one included.
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
        if t.state.name == "PRUNED":
            assert epochs < 4
        else:
            assert epochs == 4 and t.value == pytest.approx(t.intermediate_values[4])
        assert "ramp_shape" in t.params and "lr" in t.params


def test_trials_overlap(smoke_run: tuple[Path, str]) -> None:
    """Concurrency really is 2: some trials' epochs interleave in time."""
    run_dir, _ = smoke_run
    spans = []
    for trial_dir in run_dir.glob("trial_*"):
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]
        start = rows[0]["timestamp"] - rows[0]["time_this_iter_s"]
        spans.append((start, rows[-1]["timestamp"]))
    spans.sort()
    overlaps = sum(1 for (s1, e1), (s2, e2) in zip(spans, spans[1:]) if s2 < e1)
    assert overlaps >= 1, spans


def test_existing_run_folder_is_refused(smoke_run: tuple[Path, str], cache_dir: Path) -> None:
    run_dir, _ = smoke_run
    before = sorted(p.name for p in run_dir.iterdir())
    proc = run_cli("mdn_ramp", "--smoke", "--storage", str(run_dir.parent.parent), "--cache-dir", str(cache_dir), "--run", "smoke-e2e")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "already exists" in proc.stderr and "--resume" in proc.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_runs_listing(smoke_run: tuple[Path, str]) -> None:
    run_dir, _ = smoke_run
    proc = run_cli("mdn_ramp", "--runs", "--storage", str(run_dir.parent.parent))
    assert proc.returncode == 0 and "smoke-e2e" in proc.stdout and "finished" in proc.stdout
