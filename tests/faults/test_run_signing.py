"""--resume unpickles a run folder (Tune's tuner.pkl, searcher and experiment
state): it refuses files this user's key did not sign, and --report never
unpickles anything (studies/runs/run_signing.py)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli, start_cli, user_study, wait_for

QUICK = """
    from trainables.api import report_epoch


    def train(config):
        report_epoch({"loss": config["x"]}, epoch=1)
"""


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, Path, dict[str, str]]:
    """A finished two-trial run (its spec, its storage, the HOME whose key signed it)."""
    root = tmp_path_factory.mktemp("signed")
    env = {"HOME": str(root / "home")}
    spec = user_study(root, "quick", QUICK, "metric: loss\nmode: min\nconfig: {x: 0.5}\nresources: {cpus_per_trial: 1}\n"
                      "budget: {max_epochs: 1, grace_period: 1, num_samples: 2, max_failures: 0}\n")
    proc = run_cli(str(spec), "--storage", str(root / "res"), "--cache-dir", str(cache_dir), "--run", "r",
                   "--num-cpus", "2", cwd=root, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (root / "home" / ".cache" / "raystudies" / "run-signing.key").stat().st_mode & 0o077 == 0
    return spec, root / "res", env


def _copy(finished_run: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> Path:
    _, storage, _ = finished_run
    shutil.copytree(storage, tmp_path / "res")
    return tmp_path / "res" / "quick" / "r"


def _resume(finished_run: tuple[Path, Path, dict[str, str]], tmp_path: Path, *extra: str, home: str | None = None):  # noqa: ANN202
    spec, _, env = finished_run
    return run_cli(str(spec), "--resume", "--run", "r", "--storage", str(tmp_path / "res"), "--num-cpus", "2", *extra,
                   cwd=spec.parent, env={**env, **({"HOME": home} if home else {})})


def _plant(run_dir: Path, pattern: str, marker: Path) -> Path:
    (path,) = run_dir.glob(pattern)
    if path.suffix == ".pkl":
        path.write_bytes(pickle.dumps(_Payload(marker)))
    else:   # Tune's experiment state: JSON that Tune decodes with cloudpickle where it says so
        state = json.loads(path.read_text())
        state["runner_data"]["_planted"] = {"_type": "CLOUDPICKLE_FALLBACK", "value": pickle.dumps(_Payload(marker)).hex()}
        path.write_text(json.dumps(state))
    return path


@pytest.mark.parametrize("pattern", ["tuner.pkl", "searcher-state-*.pkl", "experiment_state-*.json", "callback-states-*.pkl"])
def test_resume_refuses_a_planted_pickle_and_report_never_unpickles(finished_run, tmp_path: Path, pattern: str) -> None:  # noqa: ANN001
    run_dir = _copy(finished_run, tmp_path)
    marker = tmp_path / "PWNED"
    planted = _plant(run_dir, pattern, marker)
    before = (run_dir / "run.json").read_text()
    proc = _resume(finished_run, tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and str(planted) in proc.stderr and "--trust-run-folder" in proc.stderr, proc.stderr
    assert not marker.exists() and (run_dir / "run.json").read_text() == before
    spec, _, env = finished_run
    report = run_cli(str(spec), "--report", "--run", "r", "--storage", str(tmp_path / "res"), cwd=spec.parent, env=env)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    assert not marker.exists(), "--report unpickled a file of the run folder"


def test_a_run_folder_from_another_user_is_resumed_only_when_trusted(finished_run, tmp_path: Path) -> None:  # noqa: ANN001
    run_dir = _copy(finished_run, tmp_path)
    other = str(tmp_path / "other-home")
    refused = _resume(finished_run, tmp_path, home=other)
    assert refused.returncode == 2 and "not signed by this user's key" in refused.stderr, refused.stderr[-2000:]
    trusted = _resume(finished_run, tmp_path, "--trust-run-folder", home=other)
    assert trusted.returncode == 0, trusted.stdout[-2000:] + trusted.stderr[-2000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    again = _resume(finished_run, tmp_path, home=other)   # trusted once, signed by this user from then on
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]


def test_trust_goes_with_resume_only(finished_run, tmp_path: Path) -> None:  # noqa: ANN001
    spec, storage, env = finished_run
    proc = run_cli(str(spec), "--trust-run-folder", "--storage", str(tmp_path / "res"), cwd=spec.parent, env=env)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "error: --trust-run-folder: goes with --resume (only a resume unpickles a run folder)"


GATED = """
    import os
    import time
    from pathlib import Path

    from trainables.api import report_epoch


    def train(config):
        gate = Path(os.environ["GATE_FILE"])
        deadline = time.time() + 120
        while not gate.exists() and time.time() < deadline:   # the test opens the gate after planting
            time.sleep(0.05)
        report_epoch({"loss": config["x"]}, epoch=1)
"""


def test_a_file_planted_in_the_run_folder_during_the_run_is_not_signed(tmp_path: Path, cache_dir: Path) -> None:
    """Another user with write access to a shared run folder adds a pickle while the
    study runs: the driver signs only what it and its Tune wrote, so --resume refuses it."""
    home, gate = tmp_path / "home", tmp_path / "gate"
    spec = user_study(tmp_path, "gated", GATED, "metric: loss\nmode: min\nconfig: {x: 0.5}\nresources: {cpus_per_trial: 1}\n"
                      "budget: {max_epochs: 1, grace_period: 1, num_samples: 2, max_failures: 0}\n")
    run_dir = tmp_path / "res" / "gated" / "r"
    proc = start_cli([str(spec), "--storage", str(tmp_path / "res"), "--cache-dir", str(cache_dir), "--run", "r",
                      "--num-cpus", "2"], cwd=tmp_path, HOME=str(home), GATE_FILE=str(gate), TUNE_GLOBAL_CHECKPOINT_S="0")
    try:
        wait_for(lambda: proc.poll() is not None or any(run_dir.glob("experiment_state-*.json")), 120,
                 "the run's first snapshot")
        marker = tmp_path / "PWNED"
        planted = run_dir / "searcher-state-9999-12-31_23-59-59.pkl"
        planted.write_bytes(pickle.dumps(_Payload(marker)))
        gate.touch()
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    resumed = run_cli(str(spec), "--resume", "--run", "r", "--storage", str(tmp_path / "res"), "--num-cpus", "2",
                      cwd=tmp_path, env={"HOME": str(home), "GATE_FILE": str(gate)})
    assert resumed.returncode == 2 and str(planted) in resumed.stderr and "--trust-run-folder" in resumed.stderr, \
        resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert not marker.exists()


@pytest.mark.parametrize("pattern", ["tuner.pkl", "searcher-state-*.pkl", "experiment_state-*.json"])
def test_a_pickle_swapped_in_after_the_check_is_refused_and_never_signed(finished_run, tmp_path: Path, pattern: str) -> None:  # noqa: ANN001
    """The time-of-check, time-of-use race: the folder is checked before the lock is taken,
    Tune unpickles it seconds later (Ray starts in between). A swap driven by the lock
    file's creation ran the planted code as the victim, and the planted file's digest was
    then signed, so later resumes accepted it. What Tune reads is checked as it reads it."""
    from studies.runs.run_folder import LOCK_FILE
    from studies.runs.run_signing import SIGNATURES_FILE, _digest, signing_key

    spec, _, env = finished_run
    run_dir = _copy(finished_run, tmp_path)
    (run_dir / LOCK_FILE).unlink(missing_ok=True)
    marker = tmp_path / "PWNED"
    proc = start_cli([str(spec), "--resume", "--run", "r", "--storage", str(tmp_path / "res"), "--num-cpus", "2"],
                     cwd=spec.parent, **env)
    try:
        wait_for(lambda: proc.poll() is not None or (run_dir / LOCK_FILE).exists(), 120, "the resumed driver's lock")
        planted = _plant(run_dir, pattern, marker)   # the check in prepare() has passed: the lock comes after it
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    assert not marker.exists(), "the swapped-in pickle ran: " + out[-3000:]
    assert proc.returncode == 2, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and planted.name in errors[0] and "--trust-run-folder" in errors[0], out[-3000:]
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = env["HOME"]
    try:
        digest = _digest(planted, signing_key())
    finally:
        os.environ["HOME"] = old_home or ""
    signed = json.loads((run_dir / SIGNATURES_FILE).read_text())
    assert all(digest not in digests for digests in signed.values()), "the swapped-in file was signed"
    again = _resume(finished_run, tmp_path)
    assert again.returncode == 2 and str(planted) in again.stderr, again.stderr[-2000:]
    assert not marker.exists()
