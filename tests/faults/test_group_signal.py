"""SIGTERM to the whole process group, as ``timeout`` sends it (and Slurm, to every
process of the job, at its time limit): the local Ray the driver started lives
through it, so the study stops as cleanly as on a SIGTERM to the driver alone."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli, start_cli, wait_for
from tests.faults.test_kills import _descendants, _program, _ranked_study, _results

TRIALS, EPOCHS = 10, 4


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_to_the_process_group_stops_cleanly_and_resume_finishes(tmp_path: Path, cache_dir: Path) -> None:
    # grace_period = max_epochs: ASHA stops nothing, so every trial runs every epoch;
    # max_failures 0: a trial whose worker the signal killed would count as failed.
    run_dir, base = _ranked_study(tmp_path, cache_dir, "{cpus_per_trial: 1}", "{sampler: random, seed: 3}",
                                  f"{{max_epochs: {EPOCHS}, grace_period: {EPOCHS}, reduction_factor: 2, "
                                  f"num_samples: {TRIALS}, max_failures: 0}}")
    proc = start_cli(base, cwd=tmp_path, TUNE_GLOBAL_CHECKPOINT_S="1")   # own session: its group id is proc.pid
    try:
        wait_for(lambda: proc.poll() is not None or any(_results(t) for t in run_dir.glob("trial_*")), 240,
                 "a trial's first result in the run folder")
        ray = {p: _program(p) for p in _descendants(proc.pid)}
        assert proc.poll() is None and {"gcs_server", "raylet"} <= set(ray.values()), ray
        os.killpg(proc.pid, signal.SIGTERM)   # what `timeout` does: every process of the group
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert f" {TRIALS}/{TRIALS} trials ended" not in out, "every trial ended before the signal: the test proves nothing"
    assert proc.returncode == 143, out[-3000:]
    said = [line for line in out.splitlines() if line.startswith("terminated: continue with ")]
    assert len(said) == 1 and "--resume" in said[0], out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    wait_for(lambda: not any(_alive(p) for p in ray), 30, "the run's Ray processes to end")   # at once, in practice

    resumed = run_cli(*base, "--resume", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == TRIALS and set(table["status"]) == {"complete"}, table.to_string()   # none failed, none lost
    assert set(table["epochs"]) == {EPOCHS}
    # Every epoch, no gap (a trial stopped mid-way goes on from its last checkpoint: result.json
    # may hold an epoch after it twice; the tables use each epoch once, as in test_kills).
    for trial_dir in run_dir.glob("trial_*"):
        assert sorted({int(r["epoch"]) for r in _results(trial_dir)}) == list(range(1, EPOCHS + 1)), trial_dir.name
