"""What several benchmarks share: the study CLI as a subprocess, a run folder's
per-trial records, and the same trial replayed in-process on the core code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_CACHE = Path.home() / ".cache" / "raystudies"


@dataclass
class TrialRecord:
    """One Tune trial as its folder in the run tells it."""

    trial_id: str
    config: dict[str, Any]
    epochs: int
    time_total_s: float   # Tune's time inside the trial (build, epochs, reports)
    pid: int              # the actor process (several trials share one with reuse_actors)
    start: float          # end - time_total_s: when the trial's own clock started (wall clock)
    end: float            # result.json last written: the driver logged the trial's last report
    results: list[dict[str, Any]]


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """``python studies/run.py ARGS`` as a user runs it; returns (wall s, process)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "studies" / "run.py"), *args], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"studies/run.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return wall, proc


def read_trials(run_dir: Path) -> list[TrialRecord]:
    out = []
    for trial_dir in sorted(run_dir.glob("trial_*")):
        result_file = trial_dir / "result.json"
        lines = [json.loads(ln) for ln in result_file.read_text().splitlines() if ln.strip()] if result_file.is_file() else []
        if not lines:
            continue
        last = lines[-1]
        end = result_file.stat().st_mtime
        out.append(TrialRecord(
            trial_id=last["trial_id"], config=last["config"], epochs=int(last["epoch"]),
            time_total_s=float(last["time_total_s"]), pid=int(last["pid"]),
            start=end - float(last["time_total_s"]), end=end, results=lines))
    return out


def load_study(study: str, *, smoke: bool, overrides: list[str], cache_dir: Path = DEFAULT_CACHE) -> tuple[Any, dict[str, Any]]:
    """The validated spec and the family's data, exactly as the driver loads them."""
    from studies.driver import load_family_data
    from studies.spec.study import load_spec, resolve_study_path

    spec = load_spec(resolve_study_path(study), smoke=smoke, overrides=overrides)
    return spec, load_family_data(spec, None, cache_dir)


def replay(spec: Any, data: dict[str, Any], config: dict[str, Any], epochs: int) -> float:
    """Train one trial's config for ``epochs`` epochs with the core code alone
    (no Ray, no reporting, no checkpoints); return the seconds it took."""
    from core.training import run_epochs
    from trainables._loop import PLATFORM_KEYS

    started = time.perf_counter()
    experiment = spec.family_info.build(config, data, "cpu", ignore=PLATFORM_KEYS)
    run_epochs(experiment, max_epochs=epochs)
    return time.perf_counter() - started


def machine() -> str:
    import platform

    import torch

    return (f"{platform.node() or 'host'}: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
            f"Python {platform.python_version()}, torch {torch.__version__}, load average {os.getloadavg()[0]:.2f} at start")


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A detached git worktree of ``rev`` in a temporary folder, removed afterwards."""
    where = Path(tempfile.mkdtemp(prefix="baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(where), rev], cwd=REPO, check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=REPO, check=False, capture_output=True)
        shutil.rmtree(where, ignore_errors=True)
