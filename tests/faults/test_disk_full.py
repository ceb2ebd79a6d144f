"""A real full disk: the run folder on a small tmpfs, filled from outside while
the study runs (studies/runs/free_space.py). Needs permission to mount a tmpfs
(root, as in CI); skipped, saying so, where there is none."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli, start_cli, user_study, wait_for
from tests.faults.test_kills import RANKED, _optuna_record, _terminated_in_saved_state

SIZE_MB, MIN_FREE_MB = 64, 16


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()[:120]})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave_mb: float) -> Path:
    """A file that leaves ``leave_mb`` MiB free (0: write until the disk refuses)."""
    filler = disk / "filler"
    st = os.statvfs(disk)
    size = max(0, st.f_bavail * st.f_frsize - int(leave_mb * 2**20))
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while size > 0:
            size -= os.write(fd, b"\0" * min(size, 1 << 20))
        while leave_mb == 0:
            os.write(fd, b"\0" * 4096)
    except OSError:   # the disk refused: full
        pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("leave_mb", [4, 0], ids=["nearly-full", "full"])
def test_a_disk_that_fills_mid_study(small_disk: Path, tmp_path: Path, cache_dir: Path, leave_mb: float) -> None:
    spec = user_study(tmp_path, "ranked", RANKED, "metric: loss\nmode: min\nconfig: {x: 0.5}\n"
                      "resources: {cpus_per_trial: 1}\nsearch: {sampler: random, seed: 3}\n"
                      "budget: {max_epochs: 4, grace_period: 1, reduction_factor: 2, num_samples: 12, max_failures: 0}\n")
    storage = small_disk / "res"
    run_dir = storage / "ranked" / "r"
    base = [str(spec), "--storage", str(storage), "--cache-dir", str(cache_dir), "--run", "r", "--num-cpus", "2"]
    env = {"RAYSTUDIES_MIN_FREE_MB": str(MIN_FREE_MB)}
    proc = start_cli(base, cwd=tmp_path, TUNE_GLOBAL_CHECKPOINT_S="1", **env)
    try:
        wait_for(lambda: proc.poll() is not None or len(_terminated_in_saved_state(run_dir)) >= 3, 300,
                 "three finished trials in the saved experiment state")
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        filler = _fill(small_disk, leave_mb)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 74, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and ("disk nearly full" in errors[0] or "no space left on device" in errors[0]), out[-3000:]
    assert "--resume" in errors[0], out[-3000:]
    assert "Traceback" not in out[out.index("error: "):], out[-3000:]   # Tune may log a trial's ENOSPC; the driver ends in one line

    refused = run_cli(*base, "--resume", cwd=tmp_path, env=env)   # still full: refused before any work
    assert refused.returncode == 74 and "disk nearly full" in refused.stderr, refused.stderr[-2000:]

    filler.unlink()
    resumed = run_cli(*base, "--resume", cwd=tmp_path, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    kept = [r for r in _optuna_record(run_dir / "optuna.db", "ranked").values() if not r[5]]
    assert len(kept) == 12   # never more than num_samples
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    ran = table[table["status"] != "lost (driver killed)"]
    # a trial whose checkpoint write hit ENOSPC failed, and the resume retried it
    assert len(ran) == 12 and set(ran["status"]) <= {"complete", "stopped by ASHA"}, table.to_string()


@pytest.mark.parametrize("leave_mb", [0, 0.06])   # none at all; room for part of the cache file (HDF5 failed in close)
def test_a_full_cache_dir_is_one_line_naming_it_and_nothing_is_claimed(small_disk: Path, tmp_path: Path,
                                                                      leave_mb: float) -> None:
    """The data cache is built before the run folder exists: the line names --cache-dir, asks for the
    same command again (there is nothing to --resume), exit 74, no run folder, no half cache file."""
    _fill(small_disk, leave_mb)
    cache, storage = small_disk / "cache", tmp_path / "res"
    out = run_cli("mdn_ramp", "--smoke", "--storage", str(storage), "--cache-dir", str(cache), "--num-cpus", "2")
    assert out.returncode == 74, out.stdout[-2000:] + out.stderr[-2000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: --cache-dir {cache}: no space left on device") and "same command again" in line, line
    assert "Traceback" not in out.stderr and "--resume" not in out.stderr, out.stderr[-2000:]
    assert not (storage / "mdn_ramp").exists()
    assert not list(cache.glob("*")) if cache.exists() else True
