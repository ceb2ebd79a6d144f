"""The local Ray's GCS SIGKILLed mid-study (OOM killer, a crash): Ray's own client
waits a minute for it, then ends the driver with exit 1, run.json "running" and
Ray's other processes left alive. Here the study ends at once with one line, exit 75,
run.json "interrupted", no Ray process left, and --resume finishes it."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import optuna
import pandas as pd

from tests.conftest import run_cli, start_cli, wait_for
from tests.faults.test_group_signal import _alive
from tests.faults.test_kills import _descendants, _program, _ranked_study, _results

TRIALS, EPOCHS = 10, 4


def test_a_killed_gcs_ends_the_study_with_one_line_and_resume_finishes_it(tmp_path: Path, cache_dir: Path) -> None:
    # grace_period = max_epochs: ASHA stops nothing, so every trial runs every epoch.
    run_dir, base = _ranked_study(tmp_path, cache_dir, "{cpus_per_trial: 1}", "{sampler: random, seed: 3}",
                                  f"{{max_epochs: {EPOCHS}, grace_period: {EPOCHS}, reduction_factor: 2, "
                                  f"num_samples: {TRIALS}, max_failures: 0}}")
    proc = start_cli(base, cwd=tmp_path, TUNE_GLOBAL_CHECKPOINT_S="1")
    ray: dict[int, str] = {}
    try:
        wait_for(lambda: proc.poll() is not None or any(_results(t) for t in run_dir.glob("trial_*")), 240,
                 "a trial's first result in the run folder")
        ray = {p: _program(p) for p in _descendants(proc.pid)}   # every Ray process the driver started
        gcs = [p for p, name in ray.items() if name == "gcs_server"]
        assert proc.poll() is None and len(gcs) == 1 and "raylet" in ray.values(), ray
        os.kill(gcs[0], signal.SIGKILL)
        killed = time.monotonic()
        out, _ = proc.communicate(timeout=120)   # Ray's own client gives up after 60 s
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    left = {p: name for p, name in ray.items() if _alive(p) and _program(p) == name}
    try:
        assert f" {TRIALS}/{TRIALS} trials ended" not in out, "every trial ended before the kill: the test proves nothing"
        assert proc.returncode == 75 and took < 20, (proc.returncode, took, out[-3000:])
        errors = [line for line in out.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith("error: Ray's GCS") and "interrupted" in errors[0], out[-3000:]
        assert f"--resume --run r --storage {tmp_path / 'res'}" in errors[0], errors[0]
        assert "Traceback" not in out, out[-3000:]
        assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
        wait_for(lambda: not any(_alive(p) for p in ray), 5, f"the run's Ray processes to end (alive at exit: {left})")
    finally:
        for pid in ray:   # what a failed run left (orphans by now, no longer under the driver)
            if _alive(pid) and _program(pid) == ray[pid]:
                os.kill(pid, signal.SIGKILL)

    resumed = run_cli(*base, "--resume", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    kept = table[table["status"] != "lost (driver killed)"]   # Tune's last snapshot predates them, as after a SIGKILL
    assert len(kept) == TRIALS and set(kept["status"]) == {"complete"}, table.to_string()
    assert set(kept["epochs"]) == {EPOCHS}, table.to_string()
    # Every epoch, no gap (a trial stopped mid-way goes on from its last checkpoint: result.json
    # may hold an epoch after it twice; the tables use each epoch once, as in test_kills).
    for trial_id in kept["trial_id"]:
        rows = _results(run_dir / f"trial_{trial_id}")
        assert sorted({int(r["epoch"]) for r in rows}) == list(range(1, EPOCHS + 1)), trial_id
    trials = optuna.load_study(study_name="ranked", storage=f"sqlite:///{run_dir / 'optuna.db'}").get_trials()
    done = [t for t in trials if not t.user_attrs.get("orphaned_by_driver_kill")]
    assert len(done) == TRIALS and all(t.state.name == "COMPLETE" for t in done), [t.state.name for t in trials]
    assert all(sorted(t.intermediate_values) == list(range(1, EPOCHS + 1)) for t in done)


def test_a_stopped_watchdog_says_nothing_when_the_gcs_ends_on_purpose() -> None:
    """The driver's own end of Ray (ray_session stops the watchdog first) is no alarm."""
    import subprocess
    import sys

    from studies.tune.ray_session import GcsWatchdog

    said: list[str] = []
    gcs = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        watchdog = GcsWatchdog(None, gcs, "logs", said.append).start()
        watchdog.stop()   # returns once its thread has ended: nothing polls after it
        assert not watchdog._thread.is_alive()
        gcs.kill()
        gcs.wait()
        assert said == []
    finally:
        gcs.kill()


def test_a_gcs_found_dead_ends_the_process_with_its_line_and_exit_75() -> None:
    """Whoever sees it first, the watchdog's poll or ``stop()`` (the main thread on its
    way out, raising): the process ends with exit 75 and the one line, nothing after."""
    import subprocess
    import sys

    from tests.conftest import REPO

    script = (
        "import subprocess, sys\n"
        "from studies.tune.ray_session import GcsWatchdog\n"
        "gcs = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "watchdog = GcsWatchdog(None, gcs, 'LOGS', lambda what: print('error: ' + what, file=sys.stderr)).start()\n"
        "gcs.kill()\n"
        "gcs.wait()\n"
        "watchdog.stop()\n"
        "print('not reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 75 and "not reached" not in done.stdout, (done.returncode, done.stdout, done.stderr)
    assert re.fullmatch(r"error: gcs_server pid \d+, killed by SIGKILL; see LOGS\n", done.stderr), done.stderr
