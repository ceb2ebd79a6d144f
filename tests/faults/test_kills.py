"""Faults injected for real: a trial's worker SIGKILLed, the driver SIGINTed,
SIGTERMed and SIGKILLed mid-study, then --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tests.conftest import REPO, RUN_PY, start_cli, wait_for

SLOW_SMOKE = ["--smoke", "--set", "config.num_sequences=96", "--num-cpus", "2"]


def _results(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def _optuna(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="mdn_ramp", storage=f"sqlite:///{run_dir / 'optuna.db'}").get_trials()


def test_worker_killed_mid_trial_resumes_from_checkpoint(tmp_path: Path, cache_dir: Path) -> None:
    epochs = 12
    run_dir = tmp_path / "mdn_ramp" / "kill-worker"
    proc = start_cli(["mdn_ramp", *SLOW_SMOKE, "--storage", str(tmp_path), "--cache-dir", str(cache_dir), "--run", "kill-worker",
                   "--num-samples", "1", "--set", f"budget.max_epochs={epochs}", "--set", "budget.checkpoint_every=2",
                   "--set", f"budget.grace_period={epochs}", "--set", "config.num_sequences=384", "--set", "config.d_model=32"],
                  TUNE_GLOBAL_CHECKPOINT_S="1")  # result.json reaches the run folder with each snapshot
    try:
        def trial_dir() -> Path | None:
            return next(iter(run_dir.glob("trial_*")), None) if run_dir.is_dir() else None

        # Tune reports asynchronously: the worker runs ahead of the driver's
        # result.json, so its progress is read from the checkpoints it persists.
        wait_for(lambda: trial_dir() is not None and bool(_results(trial_dir()))
                  and (trial_dir() / "checkpoint_000000").is_dir(), 240, "the first checkpoint (epoch 2)")
        pid = _results(trial_dir())[0]["pid"]
        assert not (trial_dir() / f"checkpoint_{epochs // 2 - 1:06d}").exists(), "the trial ended before it could be killed"
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    rows = _results(trial_dir())
    assert len({r["pid"] for r in rows}) == 2, "the trial did not restart in a new worker"
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert table.loc[0, "status"] == "complete" and table.loc[0, "epochs"] == epochs
    # The history the tables use has every epoch once, no gap.
    history = sorted({int(r["epoch"]) for r in rows})
    assert history == list(range(1, epochs + 1))
    restarted_at = next(i for i, r in enumerate(rows) if r["pid"] != rows[0]["pid"])
    first_new, last_old = rows[restarted_at]["epoch"], max(r["epoch"] for r in rows[:restarted_at])
    # Checkpoints every 2 epochs: the new worker starts right after the last one the old worker saved.
    assert (first_new - 1) % 2 == 0 and last_old - 1 <= first_new <= last_old + 1, (first_new, last_old)
    (t,) = _optuna(run_dir)
    assert t.state.name == "COMPLETE" and sorted(t.intermediate_values) == list(range(1, epochs + 1))


def _terminated_in_saved_state(run_dir: Path) -> set[str]:
    """Trials the run folder's experiment snapshot records as TERMINATED: what
    a resumed driver will know is finished. Tune writes result.json and that
    snapshot to the run folder together, every TUNE_GLOBAL_CHECKPOINT_S, so
    a trial's last epoch in result.json alone does not mean it is recorded."""
    done: set[str] = set()
    for path in run_dir.glob("experiment_state-*.json"):
        try:
            trials = json.loads(path.read_text())["trial_data"]
        except (json.JSONDecodeError, KeyError, OSError):
            continue  # being copied in; the next poll reads it whole
        done |= {t["trial_id"] for t in (json.loads(entry) for entry, _ in trials) if t.get("status") == "TERMINATED"}
    return done


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_driver_killed_then_resumed(tmp_path: Path, cache_dir: Path, sig: signal.Signals) -> None:
    run_dir = tmp_path / "mdn_ramp" / "kill-driver"
    base = ["mdn_ramp", *SLOW_SMOKE, "--storage", str(tmp_path), "--cache-dir", str(cache_dir), "--run", "kill-driver"]
    # grace_period = max_epochs: ASHA stops nothing. 10 trials of ~2 s on 2 workers, snapshots every
    # second: the first finished trial is on disk long before the last one ends, so the signal lands mid-study.
    proc = start_cli([*base, "--num-samples", "10", "--set", "budget.max_epochs=6", "--set", "budget.checkpoint_every=1",
                   "--set", "budget.grace_period=6", "--set", "config.num_sequences=384"], TUNE_GLOBAL_CHECKPOINT_S="1")
    try:
        wait_for(lambda: bool(_terminated_in_saved_state(run_dir)), 420, "a finished trial in the saved experiment state")
        finished_before = _terminated_in_saved_state(run_dir)
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGKILL)   # the driver and the local Ray it started
        else:
            os.kill(proc.pid, sig)   # SIGTERM: what timeout, docker stop, Slurm and Kubernetes send
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert len(finished_before) < 10, "every trial had ended before the signal: the test proves nothing"
    if sig != signal.SIGKILL:
        assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig] and "--resume" in out, out[-2000:]
        assert "Traceback" not in out and "SIGABRT" not in out, out[-2000:]
        assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    resumed = subprocess.run([sys.executable, str(RUN_PY), "mdn_ramp", "--resume", "--run", "kill-driver", "--storage", str(tmp_path),
                              "--cache-dir", str(cache_dir), "--num-cpus", "2"], cwd=REPO, capture_output=True, text=True, timeout=420)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    # No trial recorded as finished ran again: one worker, every epoch once.
    for trial_id in finished_before:
        rows = _results(run_dir / f"trial_{trial_id}")
        assert [r["epoch"] for r in rows] == list(range(1, 7)) and len({r["pid"] for r in rows}) == 1, f"trial_{trial_id} was run again"
    trials = _optuna(run_dir)
    assert not [t.number for t in trials if t.state.name == "RUNNING"], "orphaned RUNNING trials"
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    lost = table["status"] == "lost (driver killed)"
    kept = [t for t in trials if not t.user_attrs.get("orphaned_by_driver_kill")]
    tune_trials = table[~lost]
    assert len(kept) == len(tune_trials) == 10, (len(kept), len(tune_trials))
    assert set(tune_trials["status"]) <= {"complete", "stopped by ASHA"}
