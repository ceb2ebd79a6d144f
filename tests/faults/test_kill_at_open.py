"""The driver killed for real (SIGKILL to its process group) right after it
opened a snapshot file in the run folder, before writing it: each file Tune
copies from its staging folder at a later snapshot, the copy at the very first
snapshot, and tuner.pkl, which Tune writes itself when the run starts.
``--resume`` then finishes the study: every trial's epochs once in the tables,
and the trial set of an uninterrupted run (num_samples trials, each complete
or stopped by ASHA). The fault comes from kill_at_open/sitecustomize.py, on the
killed command's PYTHONPATH only."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli, start_cli
from tests.faults.test_kills import _ranked_study, _results, _trial_order

INJECTOR = Path(__file__).parent / "kill_at_open"
SAMPLES = 8

ENDED = 3
CASES = [   # (file whose open is the kill, at the first snapshot with this many trials ended)
    pytest.param("search_gen_state", ENDED),
    pytest.param("experiment_state", ENDED),
    pytest.param("searcher-state", ENDED),
    pytest.param("callback-states", ENDED),
    pytest.param("experiment_state", 0),   # the very first snapshot
    pytest.param("tuner.pkl", 0),   # written by Tune when the run starts, before any snapshot: started again
]


@pytest.mark.parametrize(("target", "ended"), CASES, ids=[f"{c.values[0]}-after-{c.values[1]}-ended" for c in CASES])
def test_a_kill_at_a_snapshot_files_open_then_resume_finishes(tmp_path: Path, cache_dir: Path, target: str, ended: int) -> None:
    run_dir, base = _ranked_study(tmp_path, cache_dir, "{cpus_per_trial: 1}", "{sampler: random, seed: 3}",
                                  f"{{max_epochs: 4, grace_period: 1, reduction_factor: 2, num_samples: {SAMPLES}, "
                                  "max_failures: 0}")
    path = os.pathsep.join(p for p in (str(INJECTOR), os.environ.get("PYTHONPATH", "")) if p)
    proc = start_cli(base, cwd=tmp_path, TUNE_GLOBAL_CHECKPOINT_S="1", PYTHONPATH=path,
                     RAYSTUDIES_KILL_AT_OPEN=target, RAYSTUDIES_KILL_AFTER_ENDED=str(ended))
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    fired = re.search(rf"kill_at_open: SIGKILL at the open of {re.escape(target)}(?: \(snapshot (\d+), (\d+) of \d+ trials ended\))?\n", out)
    assert fired, out[-3000:]
    killed = sorted(run_dir.glob(f"{target}*"))
    assert killed and killed[0].stat().st_size == 0, [(p.name, p.stat().st_size) for p in killed]
    if target != "tuner.pkl":
        snapshot, ended_at_kill = int(fired[1]), int(fired[2])
        assert ended <= ended_at_kill < SAMPLES and (ended or snapshot == 1), fired[0]

    resumed = run_cli(*base, "--resume", cwd=tmp_path, timeout=240)
    (tmp_path / "resume.log").write_text(resumed.stdout + resumed.stderr)   # kept with the run, for a failure
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    if target != "tuner.pkl":
        assert "cut short by a kill during Tune's copy of its last snapshot; put back" in resumed.stdout, resumed.stdout[-3000:]
    else:
        assert "before any trial ran: the study starts again in this run folder" in resumed.stdout, resumed.stdout[-3000:]
    table = pd.read_csv(run_dir / "tables" / "trials.csv", dtype={"trial_id": str})
    kept = table[table["status"] != "lost (driver killed)"]
    assert len(kept) == SAMPLES and set(kept["status"]) <= {"complete", "stopped by ASHA"}, table.to_string()
    assert all((row.status == "complete") == (row.epochs == 4) for row in kept.itertuples()), table.to_string()
    trials = _trial_order(run_dir, "ranked")
    assert sorted(trials) == sorted(kept["trial_id"]), (trials, table.to_string())
    for t in trials:   # every epoch once, no gap (a trial stopped mid-way repeats epochs in result.json)
        epochs = [int(r["epoch"]) for r in _results(run_dir / f"trial_{t}")]
        assert epochs and sorted(set(epochs)) == list(range(1, max(epochs) + 1)), (t, epochs)
    assert kept.set_index("trial_id")["epochs"].to_dict() == {
        t: max(int(r["epoch"]) for r in _results(run_dir / f"trial_{t}")) for t in trials}
