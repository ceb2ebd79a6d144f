"""Run folders in an S3 bucket (--storage s3://...): a real S3-compatible server
(moto's server mode) on 127.0.0.1, the CLI run as a user runs it. A smoke study
into the bucket, read back from an empty machine; a two-node study killed and
resumed from the bucket alone; one line for each way the bucket can be unusable."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, RUN_PY, wait_for

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_moto(port: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, **(extra_env or {})})

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return proc.poll() is not None   # it died: stop waiting, the assert below says so
    wait_for(answers, 60, "moto's S3 server on 127.0.0.1")
    assert proc.poll() is None, "moto_server did not start"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An S3 server with bucket `studies`; the environment a user of it sets."""
    port = _free_port()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    proc = _start_moto(port)
    try:
        _client(env).create_bucket(Bucket="studies")
        yield env
    finally:
        _stop(proc)


def _client(env: dict[str, str]):
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_DEFAULT_REGION"])


def _keys(env: dict[str, str], prefix: str) -> list[str]:
    pages = _client(env).get_paginator("list_objects_v2").paginate(Bucket="studies", Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _read(env: dict[str, str], key: str) -> bytes:
    return _client(env).get_object(Bucket="studies", Key=key)["Body"].read()


def _machine(tmp: Path, name: str, s3_env: dict[str, str]) -> tuple[dict[str, str], Path]:
    """A fresh 'machine': its own HOME (empty mirror, its own signing key) and working directory."""
    home, cwd = tmp / name / "home", tmp / name / "work"
    home.mkdir(parents=True)
    cwd.mkdir()
    env = {**os.environ, **s3_env, "HOME": str(home)}
    env.pop("RAY_ADDRESS", None)
    return env, cwd


def _cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 420) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, str(RUN_PY), *args], env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:   # say what it was doing, not a repr cut at the first lines
        out = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part
                      for part in (exc.stdout or "", exc.stderr or ""))
        raise AssertionError(f"studies/run.py {' '.join(args)} ran past {timeout} s; it said:\n{out[-4000:]}") from None


def test_a_smoke_study_lives_in_the_bucket_and_reads_back_from_an_empty_machine(s3, tmp_path: Path) -> None:
    env, cwd = _machine(tmp_path, "a", s3)
    results_before = sorted((REPO / "results").rglob("*")) if (REPO / "results").exists() else []
    proc = _cli(["mdn_ramp", "--smoke", "--storage", "s3://studies/smoke", "--run", "s1",
                 "--cache-dir", str(tmp_path / "cache")], env, cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "run folder: s3://studies/smoke/mdn_ramp/s1" in proc.stdout and "run folder:   s3://studies/smoke/mdn_ramp/s1" in proc.stdout
    keys = set(_keys(s3, "smoke/mdn_ramp/s1/"))
    base = "smoke/mdn_ramp/s1/"
    for own in ("run.json", "optuna.db", "spec.yaml", ".signatures.json", "tables/ablation.md", "tables/trials.csv",
                "plots/learning_curves.png", "tuner.pkl"):
        assert base + own in keys, own
    assert json.loads(_read(s3, base + "run.json"))["status"] == "finished"
    assert len({k.split("/")[3] for k in keys if k.split("/")[3].startswith("trial_")}) == 6
    # The Optuna study in the bucket is a whole SQLite file with every trial told.
    db = tmp_path / "optuna.db"
    db.write_bytes(_read(s3, base + "optuna.db"))
    import optuna

    trials = optuna.load_study(study_name="mdn_ramp", storage=f"sqlite:///{db}").trials
    assert len(trials) == 6 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    # Nothing of the run on this machine's results/ or working directory.
    assert (sorted((REPO / "results").rglob("*")) if (REPO / "results").exists() else []) == results_before
    assert not list(cwd.iterdir())
    # The bucket's pickles carry this machine's signatures: with its mirror gone, a resume (of a finished
    # run: nothing left to do) reads the run from the bucket and needs no --trust-run-folder.
    import shutil

    shutil.rmtree(Path(env["HOME"]) / ".cache/raystudies/remote")
    again = _cli(["mdn_ramp", "--resume", "--run", "s1", "--storage", "s3://studies/smoke",
                  "--cache-dir", str(tmp_path / "cache")], env, cwd)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert json.loads(_read(s3, base + "run.json"))["status"] == "finished"
    # Another machine, empty: --runs and --report from the bucket alone; the rebuilt tables go back into it.
    other, other_cwd = _machine(tmp_path, "b", s3)
    listed = _cli(["mdn_ramp", "--runs", "--storage", "s3://studies/smoke"], other, other_cwd, timeout=120)
    assert listed.returncode == 0 and listed.stdout.split()[:2] == ["s1", "finished"], listed.stdout + listed.stderr
    _client(s3).delete_object(Bucket="studies", Key=base + "tables/ablation.md")
    report = _cli(["mdn_ramp", "--report", "--storage", "s3://studies/smoke"], other, other_cwd, timeout=300)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    assert "report of s3://studies/smoke/mdn_ramp/s1 rebuilt" in report.stdout
    assert _read(s3, base + "tables/ablation.md").decode().startswith("# mdn_ramp: ablation report")
    table = pd.read_csv(Path(other["HOME"]) / ".cache/raystudies/remote/s3/studies/smoke/mdn_ramp/s1/tables/trials.csv")
    assert len(table) == 6 and set(table["status"]) <= {"complete", "stopped by ASHA"}


def _terminated_in_bucket(s3: dict[str, str], run: str) -> set[str]:
    done: set[str] = set()
    for key in _keys(s3, run):
        if key.count("/") == 3 and key.rsplit("/", 1)[1].startswith("experiment_state-"):
            try:
                trials = json.loads(_read(s3, key))["trial_data"]
            except (json.JSONDecodeError, KeyError):
                continue
            done |= {t["trial_id"] for t in (json.loads(e) for e, _ in trials) if t.get("status") == "TERMINATED"}
    return done


def _results(s3: dict[str, str], key: str) -> list[dict]:
    return [json.loads(line) for line in _read(s3, key).decode().splitlines() if line.strip()]


@pytest.fixture()
def two_nodes(s3) -> Iterator[str]:
    """A head and a worker (one CPU each) in their own process, with the bucket's environment."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cluster_server.py"))], cwd=REPO,
                            env={**os.environ, **s3, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        address = proc.stdout.readline().strip()
        assert address, "the two-node cluster did not start"
        yield address
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _said(log: Path, pid: int) -> str:
    """The driver's console, then the end of Ray's own log of that driver process (its C++ core
    worker logs there, not to the console: a driver that Ray ends leaves its reason only there)."""
    ray_logs = sorted(Path("/tmp/ray").glob(f"session_*/logs/python-core-driver-*_{pid}.log"))
    return log.read_text()[-3000:] + "".join(f"\n--- {p}:\n{p.read_text(errors='replace')[-3000:]}" for p in ray_logs)


def test_a_two_node_study_killed_then_resumed_from_the_bucket_on_an_empty_machine(s3, two_nodes, tmp_path: Path) -> None:
    run = "kill/mdn_ramp/r1/"
    env, cwd = _machine(tmp_path, "a", s3)
    args = ["mdn_ramp", "--smoke", "--storage", "s3://studies/kill", "--run", "r1", "--address", two_nodes,
            "--cache-dir", str(tmp_path / "cache"), "--num-samples", "8", "--set", "budget.max_epochs=5",
            "--set", "budget.checkpoint_every=1", "--set", "budget.grace_period=5", "--set", "config.num_sequences=384"]
    # Output to a file, not a pipe nobody reads while we wait: joining a cluster logs a line per file
    # Ray leaves out of the shipped checkout, enough to fill a pipe and stall the driver.
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen([sys.executable, str(RUN_PY), *args],
                                  env={**env, "TUNE_GLOBAL_CHECKPOINT_S": "1", "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
                                  cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        try:
            wait_for(lambda: bool(_terminated_in_bucket(s3, run)) or driver.poll() is not None, 420,
                     "a finished trial in the bucket's snapshot")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the driver said:\n{_said(log, driver.pid)}") from None
        assert driver.poll() is None, f"the driver ended ({driver.returncode}) before the kill:\n{_said(log, driver.pid)}"
        finished_before = _terminated_in_bucket(s3, run)
        os.killpg(driver.pid, signal.SIGKILL)   # the driver only: the cluster is another process
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert len(finished_before) < 8, "every trial had ended before the kill: the test proves nothing"
    assert json.loads(_read(s3, run + "run.json"))["status"] == "running"
    # Another machine: nothing local, another signing key (so the user trusts the folder once).
    other, other_cwd = _machine(tmp_path, "b", s3)
    resumed = _cli(["mdn_ramp", "--resume", "--run", "r1", "--storage", "s3://studies/kill", "--address", two_nodes,
                    "--cache-dir", str(tmp_path / "cache-b"), "--trust-run-folder"], other, other_cwd)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    info = json.loads(_read(s3, run + "run.json"))
    assert info["status"] == "finished" and info["cluster"]["CPU"] == 2.0
    for trial_id in finished_before:   # recorded as finished: not run again, every epoch once
        rows = _results(s3, f"{run}trial_{trial_id}/result.json")
        assert [r["epoch"] for r in rows] == list(range(1, 6)) and len({r["pid"] for r in rows}) == 1, trial_id
    table = pd.read_csv(Path(other["HOME"]) / ".cache/raystudies/remote/s3/studies/kill/mdn_ramp/r1/tables/trials.csv")
    kept = table[table["status"] != "lost (driver killed)"]
    # Tune uploads a snapshot file by file in a background thread, so the kill can leave the trial
    # states and the generator's trial count from two snapshots; the resumed study still runs exactly
    # num_samples trials (studies/tune/search_generator.py).
    assert len(kept) == 8 and (kept["epochs"] == 5).all(), table[["trial_id", "status", "epochs"]].to_string()
    db = tmp_path / "optuna.db"
    db.write_bytes(_read(s3, run + "optuna.db"))
    import optuna

    trials = optuna.load_study(study_name="mdn_ramp", storage=f"sqlite:///{db}").trials
    states = [t.state.name for t in trials]
    said = "\n".join(f"{t.number} {t.state.name} {t.user_attrs} {t.intermediate_values}" for t in trials)
    assert "RUNNING" not in states and states.count("COMPLETE") >= 8, (
        f"{said}\n{table[['trial_id', 'status', 'epochs']].to_string()}\n{resumed.stdout[-4000:]}")


def test_an_unusable_bucket_is_one_line(s3, tmp_path: Path) -> None:
    env, cwd = _machine(tmp_path, "a", s3)
    started = time.time()
    for storage, words in (("s3://no-such-bucket/x", "bucket 'no-such-bucket' does not exist"),):
        proc = _cli(["mdn_ramp", "--smoke", "--storage", storage], env, cwd, timeout=120)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"error: --storage {storage}: {words} (create it first)"], proc.stderr
    port = _free_port()   # nothing listens there
    proc = _cli(["mdn_ramp", "--runs", "--storage", "s3://studies/x"], {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"},
                cwd, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "no network connection to it" in lines[0], proc.stderr
    # A server that checks credentials (moto with IAM auth on), and a key it does not know.
    auth_port = _free_port()
    auth = _start_moto(auth_port, {"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        proc = _cli(["mdn_ramp", "--runs", "--storage", "s3://studies/x"],
                    {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{auth_port}", "AWS_ACCESS_KEY_ID": "AKIAUNKNOWN00000000",
                     "AWS_SECRET_ACCESS_KEY": "wrong"}, cwd, timeout=120)
    finally:
        _stop(auth)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "credentials were refused" in lines[0], proc.stderr
    assert not list(cwd.iterdir()) and time.time() - started < 240


def test_two_drivers_starting_at_once_on_two_machines_never_share_a_run_folder(s3, tmp_path: Path) -> None:
    """Two drivers on two machines (two HOMEs: two mirrors that cannot see each other) start
    into one bucket at the same moment. Before the claim in the bucket both took one folder
    (12 trial folders for 6 samples, every trial then counted lost). Default names: two run
    folders, each whole. One name given to both: one runs, the other is refused with one line."""
    machines = [_machine(tmp_path, name, s3) for name in ("a", "b")]

    def start(run: list[str], i: int) -> subprocess.Popen:
        env, cwd = machines[i]
        args = ["mdn_ramp", "--smoke", "--num-samples", "2", "--set", "budget.max_epochs=2", "--storage", "s3://studies/race",
                "--cache-dir", str(tmp_path / f"cache-{i}"), "--num-cpus", "1", *run]
        return subprocess.Popen([sys.executable, str(RUN_PY), *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def both(run: list[str]) -> list[tuple[int, str, str]]:
        procs = [start(run, 0), start(run, 1)]
        out = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=420)
            out.append((proc.returncode, stdout, stderr))
        return out

    for rc, stdout, stderr in both([]):
        assert rc == 0, stdout[-2000:] + stderr[-2000:]
    runs = {k.split("/")[2] for k in _keys(s3, "race/mdn_ramp/")} - {""}   # "": the folder's own marker object
    assert len(runs) == 2, runs
    for run in runs:
        trials = {k.split("/")[3] for k in _keys(s3, f"race/mdn_ramp/{run}/") if k.endswith("/params.json")}
        assert len(trials) == 2, (run, trials)
        counts = json.loads(_read(s3, f"race/mdn_ramp/{run}/run.json"))["trial_counts"]
        assert sum(counts.values()) == 2 and set(counts) <= {"complete", "stopped by ASHA"}, counts

    results = both(["--run", "same"])
    assert sorted(rc for rc, _, _ in results) == [0, 2], [(rc, err[-1500:]) for rc, _, err in results]
    refused = next(err for rc, _, err in results if rc == 2)
    assert len(refused.strip().splitlines()) == 1 and (
        "s3://studies/race/mdn_ramp/same: another driver claimed this run folder at the same moment" in refused
        or "s3://studies/race/mdn_ramp/same: run folder already exists in the bucket" in refused), refused
    trials = {k.split("/")[3] for k in _keys(s3, "race/mdn_ramp/same/") if k.endswith("/params.json")}
    assert len(trials) == 2, trials
    counts = json.loads(_read(s3, "race/mdn_ramp/same/run.json"))["trial_counts"]
    assert sum(counts.values()) == 2 and set(counts) <= {"complete", "stopped by ASHA"}, counts


def test_an_object_key_that_leaves_its_folder_is_never_followed(s3, tmp_path: Path) -> None:
    """Anyone who can write to the bucket can add a key such as `RUN/../../../x`: copied as
    it reads, --runs, --report and --resume wrote outside the local mirror, and one such key
    stopped --runs for everyone on the prefix. It is skipped with one line naming it (the
    rest of the listing goes on), and --resume refuses the run that holds it."""
    env, cwd = _machine(tmp_path, "a", s3)
    info = {"study": "mdn_ramp", "run": "r1", "status": "finished", "started": 1796600000.0, "trial_counts": {"complete": 1}}
    client = _client(s3)
    client.put_object(Bucket="studies", Key="keys/mdn_ramp/r1/run.json", Body=json.dumps(info).encode())
    hostile = "keys/mdn_ramp/r1/" + "../" * 6 + "planted/run.json"
    client.put_object(Bucket="studies", Key=hostile, Body=b'{"status": "planted"}')
    assert hostile in _keys(s3, "keys/")
    proc = _cli(["mdn_ramp", "--runs", "--storage", "s3://studies/keys"], env, cwd, timeout=120)
    assert proc.returncode == 0 and "r1" in proc.stdout, proc.stdout + proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert warnings == [f"warning: s3://studies/{hostile}: an object key that leaves its folder; not copied "
                        "(whoever can write to the bucket put it there)"], proc.stderr
    assert not [p for p in tmp_path.rglob("planted")], "a key with '..' was written outside the mirror"
    proc = _cli(["mdn_ramp", "--resume", "--run", "r1", "--storage", "s3://studies/keys"], env, cwd, timeout=120)
    # The run.json listing before it skips the key as --runs does (its warning), then the one error.
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [*warnings, (
        f"error: s3://studies/{hostile}: an object key that leaves its run folder (put there by whoever can write to the "
        "bucket); --resume refuses the run until it is deleted")], proc.stderr
    assert not [p for p in tmp_path.rglob("planted")]
