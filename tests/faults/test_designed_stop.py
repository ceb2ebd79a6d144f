"""The designed stage stopped for real (SIGTERM to the driver, SIGKILL of the
driver and its Ray), then --resume: every planned (config, seed) runs to the
end exactly once, the runs already done are kept as they were, and the
tables count each seed once."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from studies.runs.designed_record import complete_runs, planned_pairs, read_runs
from tests.conftest import run_cli, start_cli, user_study, wait_for

# The designed runs of odd seeds wait at epoch 2 for the gate: the test stops
# the stage while they wait, after the even-seed runs have finished.
GATED = """
    import os
    import time
    from pathlib import Path

    from trainables.api import report_epoch


    def train(config):
        gate = Path(os.environ["GATE_FILE"])
        for epoch in (1, 2):
            if epoch == 2 and config.get("confirm_label") and int(config["seed"]) % 2 == 1:
                deadline = time.time() + 240
                while not gate.exists() and time.time() < deadline:
                    time.sleep(0.05)
            report_epoch({"loss": (config["x"] - 0.3) ** 2 + 0.001 * (int(config["seed"]) % 5)}, epoch=epoch)
"""

SPEC = ("metric: loss\nmode: min\nconfig: {x: 0.5}\nresources: {cpus_per_trial: 1}\n"
        "budget: {max_epochs: 2, grace_period: 2, num_samples: 3}\n"
        "ablation: {baseline: {x: 0.9}, confirm: {enabled: true, top_k: 1, seeds: 2}, leave_one_out: null}\n")


def _plan(run_dir: Path) -> dict:
    return json.loads((run_dir / "designed" / "candidates.json").read_text())


def _stage_waits_at_the_gate(run_dir: Path) -> bool:
    """The even-seed runs done, an odd-seed run waiting at the gate (its epoch 1 on disk)."""
    designed = run_dir / "designed"
    if not (designed / "candidates.json").is_file():
        return False
    runs = read_runs(designed)
    return int((runs["epochs"] >= 2).sum()) == 2 and bool(((runs["epochs"] == 1) & (runs["seed"] % 2 == 1)).any())


def _stop_in_designed_stage(tmp_path: Path, cache_dir: Path, how: str) -> tuple[Path, list[str], dict[str, bytes]]:
    """Start the study, stop it ``how`` while the designed stage waits; return its
    run folder, the resume command, and the finished runs' result.json bytes."""
    spec = user_study(tmp_path, "gated", GATED, SPEC)
    storage = tmp_path / "res"
    run_dir = storage / "gated" / "r"
    args = [str(spec), "--storage", str(storage), "--cache-dir", str(cache_dir), "--run", "r", "--num-cpus", "2"]
    env = {"HOME": str(tmp_path / "home"), "GATE_FILE": str(tmp_path / "gate"), "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    proc = start_cli(args, cwd=tmp_path, **env)
    try:
        wait_for(lambda: proc.poll() is not None or _stage_waits_at_the_gate(run_dir), 240,
                 "two designed runs done and one waiting at the gate")
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        done = {d: (run_dir / "designed" / d / "result.json").read_bytes()
                for d in read_runs(run_dir / "designed").query("epochs >= 2")["trial_dir"]}
        if how == "SIGTERM":
            os.kill(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate(timeout=180)
            assert proc.returncode == 143, out[-3000:]
            assert f"--resume --run r --storage {storage}" in out, out[-2000:]
        else:
            os.killpg(proc.pid, signal.SIGKILL)   # the driver and the local Ray it started
            proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return run_dir, [*args, "--resume"], done


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_designed_stage_continues_with_each_seed_once(tmp_path: Path, cache_dir: Path, how: str) -> None:
    run_dir, resume, done_before = _stop_in_designed_stage(tmp_path, cache_dir, how)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == ("interrupted" if how == "SIGTERM" else "running")
    env = {"HOME": str(tmp_path / "home"), "GATE_FILE": str(tmp_path / "gate")}
    if how == "SIGTERM":   # --designed on it points to --resume, and changes nothing
        again = run_cli(*resume[:-1], "--designed", cwd=tmp_path, env=env)
        assert again.returncode == 2 and "continue it with --resume --run r" in again.stderr, again.stderr[-2000:]
    (tmp_path / "gate").touch()
    resumed = run_cli(*resume, cwd=tmp_path, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "2 done before, 2 to run" in resumed.stdout, resumed.stdout[-2000:]

    plan = _plan(run_dir)
    runs = complete_runs(run_dir / "designed", ["loss"], 2)   # refuses a (config, seed) done twice
    assert sorted(zip(runs["config"], runs["seed"])) == sorted(planned_pairs(plan))
    for name, before in done_before.items():   # the runs done before the stop were kept, not re-run
        assert (run_dir / "designed" / name / "result.json").read_bytes() == before
    set_aside = read_runs(run_dir / "designed" / "interrupted")
    assert len(set_aside) >= 1 and (set_aside["epochs"] < 2).all()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    table = pd.read_csv(run_dir / "tables" / "confirmation.csv")
    assert set(table["seeds"]) == {2}, table
