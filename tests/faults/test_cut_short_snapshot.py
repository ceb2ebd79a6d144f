"""A snapshot file cut short, as a kill during Tune's in-place copy leaves it
(empty: killed at its open): --resume puts the whole snapshot back from the
run's copy and finishes; with no copy it refuses in one line, trusted or not,
where Tune used to hang or loop."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli, start_cli, wait_for
from tests.faults.test_kills import _ranked_study, _results, _terminated_in_saved_state, _trial_order


def test_a_cut_short_snapshot_file_is_put_back_or_refused_in_one_line(tmp_path: Path, cache_dir: Path) -> None:
    run_dir, base = _ranked_study(tmp_path, cache_dir, "{cpus_per_trial: 1}", "{sampler: random, seed: 3}",
                                  "{max_epochs: 4, grace_period: 1, reduction_factor: 2, num_samples: 12, max_failures: 0}")
    copy = run_dir / ".last-snapshot"
    proc = start_cli(base, cwd=tmp_path, TUNE_GLOBAL_CHECKPOINT_S="1")
    try:
        wait_for(lambda: proc.poll() is not None or (len(_terminated_in_saved_state(run_dir)) >= 4
                                                     and (copy / ".whole").is_file()),
                 300, "four finished trials in the saved snapshot, and its copy")
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out[-3000:]
    assert len(list(run_dir.glob("trial_*"))) < 12, "every trial had started: the test proves nothing"
    searcher = next(run_dir.glob("searcher-state-*.pkl"))
    state = next(run_dir.glob("experiment_state-*.json"))

    # No whole copy: one line naming the file, with or without --trust-run-folder (Tune hung on it).
    kept = tmp_path / "kept-copy"
    shutil.move(copy, kept)
    searcher.write_bytes(b"")
    for extra in ([], ["--trust-run-folder"]):
        refused = run_cli(*base, "--resume", *extra, cwd=tmp_path, timeout=120)
        assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
        line = refused.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: {searcher}: empty or cut short") and "start it again" in line, line

    # With the copy: the whole snapshot put back, and the study finishes with every epoch once.
    shutil.move(kept, copy)
    state.write_bytes(b"")
    resumed = run_cli(*base, "--resume", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "cut short by a kill during Tune's copy of its last snapshot; put back" in resumed.stdout
    trials = _trial_order(run_dir, "ranked")
    assert len(trials) == 12
    for t in trials:   # a trial stopped mid-way repeats, in result.json, the epochs after its last checkpoint
        epochs = [int(r["epoch"]) for r in _results(run_dir / f"trial_{t}")]
        assert sorted(set(epochs)) == list(range(1, max(epochs) + 1)), (t, epochs)
    table = pd.read_csv(run_dir / "tables" / "trials.csv", dtype={"trial_id": str})   # each epoch once
    assert len(table) == 12 and table.set_index("trial_id")["epochs"].to_dict() == {
        t: max(int(r["epoch"]) for r in _results(run_dir / f"trial_{t}")) for t in trials}
