"""A run folder is position-independent: interrupted, then copied, moved, or
read from a bucket on another machine (another HOME, so another local mirror,
and another bucket path), ``--resume`` continues the folder it is given, with
every epoch run once, and writes nothing anywhere else.

Tune pickles absolute paths into a snapshot (the experiment's storage in
``search_gen_state-*.json``, the Optuna SQLite URL in the searcher's pickle and
in ``tuner.pkl``); these tests fail wherever a resume trusts one of them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tests.conftest import run_cli, start_cli, user_study, wait_for
from tests.faults.test_kills import RANKED, _results, _terminated_in_saved_state, _whole_snapshot

SAMPLES, EPOCHS = 8, 4
SPEC = ("metric: loss\nmode: min\nconfig: {x: 0.5}\nresources: {cpus_per_trial: 1}\n"
        "search: {sampler: random, seed: 7}\n"
        f"budget: {{max_epochs: {EPOCHS}, grace_period: {EPOCHS}, num_samples: {SAMPLES}, max_failures: 0}}\n")


def _args(spec: Path, storage: str, cache_dir: Path) -> list[str]:
    return [str(spec), "--storage", storage, "--cache-dir", str(cache_dir), "--run", "r", "--num-cpus", "2"]


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: (size, mtime): what a resume elsewhere must leave as it was."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _interrupt_mid_study(args: list[str], cwd: Path, run_dir: Path, **env: str) -> set[str]:
    """Start the study, SIGINT it once a finished trial is in a whole saved snapshot."""
    proc = start_cli(args, cwd=cwd, TUNE_GLOBAL_CHECKPOINT_S="1", **env)
    try:
        wait_for(lambda: proc.poll() is not None or (bool(_terminated_in_saved_state(run_dir)) and _whole_snapshot(run_dir)),
                 300, "a finished trial in a whole saved snapshot")
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out[-3000:]
    started = len(list(run_dir.glob("trial_*")))
    assert started < SAMPLES, "every trial had started before the interrupt: the test proves nothing"
    return _terminated_in_saved_state(run_dir)


def _check_finished(run_dir: Path, baseline: list[float], finished_before: set[str]) -> None:
    """The resumed folder holds the study an uninterrupted run holds: the same
    trials (by parameter), each run to the end. A trial the snapshot recorded as
    finished ran every epoch once, in one worker; one in flight at the interrupt
    went on from its checkpoint, never from the start (Tune runs again only the
    epochs after the last checkpoint its snapshot recorded; the tables count each once)."""
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == SAMPLES and set(table["status"]) == {"complete"}, table.to_string()
    assert (table["epochs"] == EPOCHS).all(), table.to_string()
    folders = sorted(run_dir.glob("trial_*"))
    assert len(folders) == SAMPLES, [p.name for p in folders]
    assert finished_before and {f"trial_{t}" for t in finished_before} <= {p.name for p in folders}
    for folder in folders:
        rows = _results(folder)
        epochs = [int(r["epoch"]) for r in rows]
        if folder.name.removeprefix("trial_") in finished_before:
            assert epochs == list(range(1, EPOCHS + 1)) and len({r["pid"] for r in rows}) == 1, folder.name
        assert sorted(set(epochs)) == list(range(1, EPOCHS + 1)) and epochs.count(1) == 1, (folder.name, epochs)
    study = optuna.load_study(study_name="ranked", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    finished = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(finished) == len(study.get_trials()) == SAMPLES
    assert all(sorted(t.intermediate_values) == list(range(1, EPOCHS + 1)) for t in finished)
    assert sorted(round(t.params["x"], 9) for t in finished) == baseline


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> list[float]:
    """The trial set of the same study run without interruption (sorted ``x``)."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    spec = user_study(tmp, "ranked", RANKED, SPEC)
    proc = run_cli(*_args(spec, str(tmp / "res"), cache_dir), cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study = optuna.load_study(study_name="ranked", storage=f"sqlite:///{tmp / 'res/ranked/r/optuna.db'}")
    return sorted(round(t.params["x"], 9) for t in study.get_trials())


def test_a_copied_run_resumes_into_the_copy_alone(tmp_path: Path, cache_dir: Path, baseline: list[float]) -> None:
    spec = user_study(tmp_path, "ranked", RANKED, SPEC)
    original = tmp_path / "res" / "ranked" / "r"
    finished_before = _interrupt_mid_study(_args(spec, str(tmp_path / "res"), cache_dir), tmp_path, original)
    copy = tmp_path / "copy" / "ranked" / "r"
    copy.parent.mkdir(parents=True)
    shutil.copytree(original, copy, symlinks=True)
    before = _listing(tmp_path / "res")
    resumed = run_cli(*_args(spec, str(tmp_path / "copy"), cache_dir), "--resume", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert _listing(tmp_path / "res") == before, "the resumed copy wrote into the original folder"
    _check_finished(copy, baseline, finished_before)


def test_a_moved_run_resumes_where_it_now_is(tmp_path: Path, cache_dir: Path, baseline: list[float]) -> None:
    spec = user_study(tmp_path, "ranked", RANKED, SPEC)
    original = tmp_path / "res" / "ranked" / "r"
    finished_before = _interrupt_mid_study(_args(spec, str(tmp_path / "res"), cache_dir), tmp_path, original)
    moved = tmp_path / "elsewhere" / "ranked" / "r"
    moved.parent.mkdir(parents=True)
    original.rename(moved)
    resumed = run_cli(*_args(spec, str(tmp_path / "elsewhere"), cache_dir), "--resume", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stdout + resumed.stderr, resumed.stderr[-3000:]
    assert not original.exists(), "the resume re-created the folder the run moved away from"
    _check_finished(moved, baseline, finished_before)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """An S3-compatible server (moto's server mode) on 127.0.0.1 with bucket ``studies``;
    the environment a user of it sets."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto")
    port = _free_port()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return proc.poll() is not None
    try:
        wait_for(answers, 60, "moto's S3 server")
        assert proc.poll() is None, "moto_server did not start"
        _bucket(env).create_bucket(Bucket="studies")
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _bucket(env: dict[str, str]):  # noqa: ANN202
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_DEFAULT_REGION"])


def _objects(env: dict[str, str], prefix: str) -> dict[str, tuple[str, str]]:
    """Every object under ``prefix``: (ETag, LastModified)."""
    pages = _bucket(env).get_paginator("list_objects_v2").paginate(Bucket="studies", Prefix=prefix)
    return {o["Key"]: (o["ETag"], str(o["LastModified"])) for page in pages for o in page.get("Contents", [])}


def test_a_bucket_copy_resumes_on_another_machine(tmp_path: Path, cache_dir: Path, baseline: list[float],
                                                 s3: dict[str, str]) -> None:
    """A run in an S3 bucket, interrupted, copied to another prefix and resumed on
    "another machine" (another HOME: an empty local mirror at another path; the
    first machine's home gone): from the bucket alone, and nothing written under
    the first prefix or the first machine's mirror."""
    spec = user_study(tmp_path, "ranked", RANKED, SPEC)
    first, second = tmp_path / "home1", tmp_path / "home2"
    proc = start_cli(_args(spec, "s3://studies/a", cache_dir), cwd=tmp_path, TUNE_GLOBAL_CHECKPOINT_S="1",
                     HOME=str(first), **s3)
    try:
        assert proc.stdout is not None
        said = []
        for line in proc.stdout:   # the driver's own progress line: a trial has ended
            said.append(line)
            if f" 1/{SAMPLES} trials ended" in line:
                break
        os.kill(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, ("".join(said) + rest)[-3000:]
    original = _objects(s3, "a/")
    # The driver pulled its last snapshot into the first machine's mirror as it stopped.
    finished_before = _terminated_in_saved_state(first / ".cache/raystudies/remote/s3/studies/a/ranked/r")
    assert len({k.split("/")[3] for k in original if k.count("/") >= 4 and k.split("/")[3].startswith("trial_")}) < SAMPLES, \
        "every trial had started before the interrupt: the test proves nothing"
    for key in original:
        _bucket(s3).copy_object(Bucket="studies", Key="b/" + key.removeprefix("a/"),
                                CopySource={"Bucket": "studies", "Key": key})
    key = Path(".cache") / "raystudies" / "run-signing.key"   # the same user: their key, on the other machine
    (second / key).parent.mkdir(parents=True)
    shutil.copyfile(first / key, second / key)
    first.rename(tmp_path / "home1.gone")   # another machine: the first one's mirror is not there
    before = _listing(tmp_path / "home1.gone")
    resumed = run_cli(*_args(spec, "s3://studies/b", cache_dir), "--resume", cwd=tmp_path, timeout=300,
                      env={**s3, "HOME": str(second)})
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert _objects(s3, "a/") == original, "the resume wrote under the bucket prefix the run was copied from"
    assert not first.exists() and _listing(tmp_path / "home1.gone") == before, "the resume wrote into the first mirror"
    mirror = second / ".cache/raystudies/remote/s3/studies/b/ranked/r"
    _check_finished(mirror, baseline, finished_before)
    done = {k.split("/")[3] for k in _objects(s3, "b/ranked/r/") if k.endswith("/result.json")}
    assert len(done) == SAMPLES, done
