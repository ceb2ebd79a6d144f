"""Nothing lost, nothing mixed: resumes keep their data, a run folder has one
driver, a study that produced nothing says so, a failed start removes only
what it made. Each fault is injected for real, through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from core.data.hdf5 import write_hdf5
from core.data.motion import generate_motion
from studies.runs import run_folder
from tests.conftest import REPO, run_cli, start_cli, user_study, wait_for

STUDIES = REPO / "studies"


def _motion_file(path: Path, dtype: str, seed: int = 0) -> Path:
    arrays = generate_motion(num_sequences=24, min_length=20, max_length=32, seed=seed)
    write_hdf5(path, {k: a.astype(dtype) if a.dtype.kind == "f" else a for k, a in arrays.items()})
    return path


def _fake_run(storage: Path, name: str, *, data: Path | None) -> Path:
    """A finished-looking run folder as the driver leaves it (spec copies, run.json):
    enough for --resume to be checked, which happens before Ray starts."""
    run_dir = storage / "mdn_ramp" / name
    run_dir.mkdir(parents=True)
    shutil.copyfile(STUDIES / "mdn_ramp.yaml", run_dir / "spec.yaml")
    shutil.copyfile(REPO / "search_spaces" / "mdn_ramp.yaml", run_dir / "search_space.yaml")
    info = run_folder.RunInfo(study="mdn_ramp", run=name, status="interrupted", started=time.time(),
                              invocation=run_folder.Invocation(smoke=True, data=str(data) if data else None),
                              data_sha256=run_folder.file_sha256(data) if data else None)
    run_folder.write_run_info(run_dir, info)
    return run_dir


def test_resume_refuses_other_data_and_changed_data(tmp_path: Path, cache_dir: Path) -> None:
    mine = _motion_file(tmp_path / "mine.h5", "float32")
    other = _motion_file(tmp_path / "other.h5", "float32", seed=1)
    _fake_run(tmp_path / "res", "with-data", data=mine)
    _fake_run(tmp_path / "res", "synthetic", data=None)
    before = (tmp_path / "res" / "mdn_ramp" / "with-data" / "run.json").read_text()
    common = ["--resume", "--storage", str(tmp_path / "res"), "--cache-dir", str(cache_dir)]

    proc = run_cli("mdn_ramp", *common, "--run", "with-data", "--data", str(other))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: --data {other}: run with-data was started with --data {mine}; --resume continues on that data "
        "(drop --data, or start a new run)"]
    proc = run_cli("mdn_ramp", *common, "--run", "synthetic", "--data", str(mine))
    assert proc.returncode == 2 and "was started with the synthetic data (no --data)" in proc.stderr, proc.stderr

    _motion_file(mine, "float32", seed=2)   # the same path, other content
    proc = run_cli("mdn_ramp", *common, "--run", "with-data")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {mine}: changed since run with-data started (sha256 ") and "mix two data sets" in line
    mine.unlink()
    proc = run_cli("mdn_ramp", *common, "--run", "with-data")
    assert proc.returncode == 2 and "the data file run with-data was started with is gone" in proc.stderr
    assert (tmp_path / "res" / "mdn_ramp" / "with-data" / "run.json").read_text() == before   # nothing touched


def test_resume_checks_the_optuna_study_before_any_work(tmp_path: Path, cache_dir: Path) -> None:
    storage = tmp_path / "res"
    run_dir = _fake_run(storage, "r", data=None)
    common = ["mdn_ramp", "--resume", "--run", "r", "--storage", str(storage), "--cache-dir", str(cache_dir)]
    proc = run_cli(*common)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {run_dir / 'optuna.db'}: missing, and the run has no Tune snapshot to rebuild it from")
    (run_dir / "optuna.db").write_bytes(b"SQLite format 3\x00" + b"\x13" * 4000)   # a torn copy
    proc = run_cli(*common)
    assert proc.returncode == 2 and "optuna.db: not a readable Optuna study (" in proc.stderr, proc.stderr
    assert f"move it aside (mv {run_dir / 'optuna.db'} {run_dir / 'optuna.db'}.damaged) and --resume rebuilds it" in proc.stderr
    (run_dir / "optuna.db").unlink()
    import optuna

    optuna.create_study(study_name="other_study", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    proc = run_cli(*common)
    assert proc.returncode == 2 and "holds no study 'mdn_ramp' (found: ['other_study'])" in proc.stderr, proc.stderr
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"   # nothing ran


def test_a_run_records_its_data_and_trains_on_float64_big_endian_files(tmp_path: Path, cache_dir: Path) -> None:
    """numpy's default float64, in the other byte order: cast once at load, every trial trains."""
    data = _motion_file(tmp_path / "f8be.h5", ">f8")
    proc = run_cli("mdn_ramp", "--smoke", "--storage", str(tmp_path / "res"), "--cache-dir", str(cache_dir), "--run", "be",
                   "--data", str(data), "--num-cpus", "2", "--num-samples", "2", "--set", "budget.max_epochs=2",
                   "--set", "budget.grace_period=2", "--set", "ablation.leave_one_out=null")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "res" / "mdn_ramp" / "be"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["invocation"]["data"] == str(data.resolve())
    assert info["data_sha256"] == run_folder.file_sha256(data)
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == 2 and set(table["status"]) == {"complete"}


FAILING = '''
def train(config):
    raise ValueError("the data has 3 frames, the model needs 8")
'''


def test_a_study_in_which_every_trial_failed_exits_3_and_says_why(tmp_path: Path, cache_dir: Path) -> None:
    spec = user_study(tmp_path, "broken", FAILING, "metric: loss\nmode: min\nconfig: {x: 0.5}\nresources: {cpus_per_trial: 1}\n"
                      "budget: {max_epochs: 2, grace_period: 2, num_samples: 2, max_failures: 0}\n")
    proc = run_cli(str(spec), "--storage", str(tmp_path / "res"), "--cache-dir", str(cache_dir),
                   "--run", "r", "--num-cpus", "2", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: every trial failed; the first (trial_"), proc.stderr[-2000:]
    assert "ValueError: the data has 3 frames, the model needs 8" in errors[0]
    run_dir = tmp_path / "res" / "broken" / "r"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert set(pd.read_csv(run_dir / "tables" / "trials.csv")["status"]) == {"failed"}


def test_a_failed_start_removes_only_what_it_created(tmp_path: Path, cache_dir: Path) -> None:
    """An error after Ray started (a GPU asked for on a CPU machine) leaves the
    user's own empty --storage folder in place."""
    storage = tmp_path / "my_results"
    storage.mkdir()
    proc = run_cli("mdn_ramp", "--smoke", "--storage", str(storage), "--cache-dir", str(cache_dir),
                   "--gpus-per-trial", "1", "--num-cpus", "2", "--num-gpus", "0")
    assert proc.returncode == 2 and "the Ray cluster has no GPUs" in proc.stderr, proc.stderr[-2000:]
    assert storage.is_dir() and list(storage.iterdir()) == []


def test_a_second_driver_on_a_run_folder_is_refused_naming_the_holder(tmp_path: Path, cache_dir: Path) -> None:
    run_dir = tmp_path / "mdn_ramp" / "busy"
    first = start_cli(["mdn_ramp", "--smoke", "--storage", str(tmp_path), "--cache-dir", str(cache_dir), "--run", "busy",
                    "--num-cpus", "2", "--set", "budget.max_epochs=200", "--set", "budget.grace_period=200"])
    try:
        wait_for(lambda: (run_dir / "run.json").is_file() and any(run_dir.glob("trial_*")), 300, "the first driver's trials")
        second = run_cli("mdn_ramp", "--resume", "--run", "busy", "--storage", str(tmp_path), "--cache-dir", str(cache_dir),
                         "--num-cpus", "2", timeout=120)
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        (line,) = second.stderr.strip().splitlines()
        assert line.startswith(f"error: {run_dir}: in use by another driver (pid {first.pid} on ") and "--resume" in line
        assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
        assert first.poll() is None
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    with run_folder.driver_lock(run_dir):   # the kernel dropped the killed driver's lock: no stale lock
        pass


def test_the_lock_is_exclusive_names_its_holder_and_is_released(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with run_folder.driver_lock(run_dir):
        assert (run_dir / run_folder.LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on ")
        try:
            with run_folder.driver_lock(run_dir):
                raise AssertionError("a second lock in the same process was granted")
        except run_folder.UserError as exc:
            assert "in use by another driver (pid" in str(exc)
    with run_folder.driver_lock(run_dir):   # released: taken again
        pass


SILENT = '''
from ray import tune

def train(config):
    for epoch in range(1, config["max_epochs"] + 1):
        tune.report({"epoch": epoch, "val_los": 1.0 / epoch})   # a typo: the study's metric is val_loss
'''


def test_a_trainable_that_never_reports_the_metric_fails_its_trials_not_the_study(tmp_path: Path, cache_dir: Path) -> None:
    """Tune alone ends the whole study with a TuneError at the first such result."""
    spec = user_study(tmp_path, "quiet", SILENT, "metric: val_loss\nmode: min\nconfig: {x: 0.5}\nresources: {cpus_per_trial: 1}\n"
                      "budget: {max_epochs: 5, grace_period: 5, num_samples: 3, max_failures: 0}\n")
    proc = run_cli(str(spec), "--storage", str(tmp_path / "res"), "--cache-dir", str(cache_dir),
                   "--run", "r", "--num-cpus", "2", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "TuneError" not in proc.stderr, proc.stderr[-3000:]
    assert "never reported the study's metric `val_loss` as a number (it reported: epoch, val_los)" in proc.stderr
    table = pd.read_csv(tmp_path / "res" / "quiet" / "r" / "tables" / "trials.csv")
    assert len(table) == 3 and set(table["status"]) == {"failed"} and set(table["epochs"]) == {1}   # stopped at once


def test_optuna_db_locked_by_another_process_for_longer_than_sqlites_default(tmp_path: Path) -> None:
    """A dashboard or a backup holding optuna.db for 7 s (SQLite gives up after 5 s by
    default, and the searcher's next suggestion would end the study): the write waits."""
    import optuna

    from studies.runs.optuna_store import sqlite_storage

    db = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="s", storage=sqlite_storage(str(db)))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); c.execute('BEGIN EXCLUSIVE'); "
         "print('locked', flush=True); time.sleep(7); c.rollback()", str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"   # the other process holds it now
        started = time.time()
        trial = study.ask()          # a write: waits for the lock instead of failing after 5 s
        trial.report(0.5, 1)
        waited = time.time() - started
    finally:
        holder.wait(timeout=30)
    assert waited > 5.0, waited      # it did wait past SQLite's default
    assert study.trials[0].intermediate_values == {1: 0.5}
