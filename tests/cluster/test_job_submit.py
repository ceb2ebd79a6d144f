"""A real local Ray cluster: `ray start --head` on 127.0.0.1 (token auth on, as
Ray 2.60 sets it up), the smoke study sent with `ray job submit`, its tables
checked, and exactly the processes this test started stopped afterwards."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_with_marker(marker: str) -> list[int]:
    """Processes whose environment carries our marker: the ones we started and their children."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _stop(marker: str) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        pids = [p for p in _pids_with_marker(marker) if p != os.getpid()]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline and [p for p in _pids_with_marker(marker) if p != os.getpid()]:
            time.sleep(0.2)


def _wait_for_job_agent(env: dict, dashboard: str, timeout: float = 120.0) -> None:
    """The head's job agent comes up some seconds after `ray start` returns."""
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        probe = subprocess.run([str(BIN / "ray"), "job", "submit", f"--address={dashboard}", "--no-wait", "--", "true"],
                               env=env, capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return
        last = (probe.stderr or probe.stdout).strip().splitlines()[-1:]
        time.sleep(2)
    raise AssertionError(f"the job agent of the local head never came up: {last}")


@pytest.fixture(scope="module")
def local_head(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("head")
    marker = f"RAYSTUDIES_TEST_CLUSTER={uuid.uuid4().hex}"
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), marker.split("=")[0]: marker.split("=")[1]}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)
    # As cluster/README.md says: generate the token, then `ray start` finds it and turns token auth on.
    gen = subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True, text=True, timeout=60)
    assert gen.returncode == 0, gen.stderr[-2000:]
    gcs_port, dash_port = _free_port(), _free_port()
    temp_dir = Path("/tmp") / f"rs-{uuid.uuid4().hex[:8]}"  # Ray's socket paths must stay short
    # Every port free and explicit: another Ray on this machine (the session's
    # in-process one, a study) already holds the default agent ports.
    ports = [f"--{name}={_free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port")]
    start = subprocess.run(
        [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}", "--num-cpus=2", "--num-gpus=0",
         f"--temp-dir={temp_dir}", "--disable-usage-stats", *ports],
        env=env, capture_output=True, text=True, timeout=180)
    try:
        assert start.returncode == 0, start.stdout[-2000:] + start.stderr[-2000:]
        assert (home / ".ray" / "auth_token").is_file(), "token authentication was not set up"
        client_env = {**env, "RAY_AUTH_MODE": "token"}  # clients: use the token
        _wait_for_job_agent(client_env, f"http://127.0.0.1:{dash_port}")
        yield client_env, f"http://127.0.0.1:{dash_port}"
    finally:
        _stop(marker)
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)
    assert not [p for p in _pids_with_marker(marker) if p != os.getpid()]


def test_job_submit_smoke_study(local_head, tmp_path: Path) -> None:
    env, dashboard = local_head
    storage, cache = tmp_path / "results", tmp_path / "cache"
    runtime_env = {"excludes": ["results/", ".git/", ".venv/", ".ci-venv/", "**/__pycache__/", "*.h5"]}
    proc = subprocess.run(
        [str(BIN / "ray"), "job", "submit", f"--address={dashboard}", f"--working-dir={REPO}",
         f"--runtime-env-json={json.dumps(runtime_env)}", "--",
         "python", "studies/run.py", "mdn_ramp", "--smoke", "--address", "auto", "--storage", str(storage),
         "--cache-dir", str(cache), "--run", "job-smoke"],
        env=env, capture_output=True, text=True, timeout=420)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "succeeded" in out
    run_dir = storage / "mdn_ramp" / "job-smoke"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["invocation"]["address"] == "auto"
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == 6
    assert (run_dir / "tables" / "ablation.md").read_text().startswith("# mdn_ramp: ablation report")


def test_job_submit_without_token_is_refused(local_head) -> None:
    """Token auth is really on: a client without the token cannot submit."""
    env, dashboard = local_head
    no_token = {**env, "HOME": str(Path(env["HOME"]).parent / "other-home")}
    Path(no_token["HOME"]).mkdir(exist_ok=True)
    proc = subprocess.run([str(BIN / "ray"), "job", "list", f"--address={dashboard}"], env=no_token,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
