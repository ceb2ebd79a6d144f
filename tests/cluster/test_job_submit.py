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


LOCAL_YAML = REPO / "cluster" / "local.yaml"


def _launcher_commands(key: str, gcs_port: int, extra: list[str]) -> list[str]:
    """cluster/local.yaml's commands as the launcher runs them, with what one
    shared test machine needs changed: `ray stop` is left out (it would stop
    every Ray on the machine, the session's too), the GCS port is a free one,
    every other port and Ray's temp folder are explicit, and there is no
    ~/ray_bootstrap_config.yaml (the launcher writes it; here no autoscaler runs)."""
    import yaml

    out = []
    for cmd in yaml.safe_load(LOCAL_YAML.read_text())[key]:
        if cmd.split()[-1] == "stop" and "ray" in cmd:
            continue
        cmd = cmd.replace("$RAY_HEAD_IP", "127.0.0.1").replace("6379", str(gcs_port))
        cmd = cmd.replace(" --autoscaling-config=~/ray_bootstrap_config.yaml", "")
        if "ray start" in cmd:
            cmd = " ".join([cmd, *extra])
        out.append(cmd)
    return out


def _node_flags(temp_dir: Path | None) -> list[str]:
    # Every port free and explicit: another Ray on this machine (the session's
    # in-process one, a study) already holds the default agent ports.
    flags = [f"--{name}={_free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "node-manager-port", "object-manager-port")]
    flags += ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0", "--disable-usage-stats"]
    return flags + ([f"--temp-dir={temp_dir}"] if temp_dir else [])


def _node_home(root: Path, name: str) -> Path:
    """A node's HOME after cluster/local.yaml's setup_commands: the venv they make
    is this test's own environment."""
    home = root / name
    home.mkdir()
    (home / "raystudies-venv").symlink_to(Path(sys.prefix))
    return home


def _bash(commands: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", " && ".join(commands)], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def local_head(tmp_path_factory: pytest.TempPathFactory):
    """A head started exactly by cluster/local.yaml's head_setup_commands and
    head_start_ray_commands (see _launcher_commands for what a test machine changes)."""
    tmp_path = tmp_path_factory.mktemp("head")
    marker = f"RAYSTUDIES_TEST_CLUSTER={uuid.uuid4().hex}"
    home = _node_home(tmp_path, "head-home")
    env = {**os.environ, "HOME": str(home), marker.split("=")[0]: marker.split("=")[1]}
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    gcs_port, dash_port = _free_port(), _free_port()
    temp_dir = Path("/tmp") / f"rs-{uuid.uuid4().hex[:8]}"  # Ray's socket paths must stay short
    extra = [*_node_flags(temp_dir), f"--dashboard-port={dash_port}", f"--ray-client-server-port={_free_port()}"]
    start = _bash([*_launcher_commands("head_setup_commands", gcs_port, extra),
                   *_launcher_commands("head_start_ray_commands", gcs_port, extra)], env)
    try:
        assert start.returncode == 0, start.stdout[-2000:] + start.stderr[-2000:]
        assert (home / ".ray" / "auth_token").is_file(), "the head's setup made no token"
        client_env = {**env, "RAY_AUTH_MODE": "token"}  # clients: use the token
        _wait_for_job_agent(client_env, f"http://127.0.0.1:{dash_port}")
        yield client_env, f"http://127.0.0.1:{dash_port}", gcs_port, tmp_path, temp_dir
    finally:
        _stop(marker)
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)
    assert not [p for p in _pids_with_marker(marker) if p != os.getpid()]


def _alive_nodes(env: dict, gcs_port: int) -> int:
    probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='127.0.0.1:{gcs_port}', logging_level='ERROR'); "
                            "print(sum(n['Alive'] for n in ray.nodes()))"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    return int(probe.stdout.strip().splitlines()[-1])


def test_a_worker_joins_with_the_launcher_commands_and_the_synced_token(local_head) -> None:
    """worker_start_ray_commands as shipped: with the head's token copied to the
    worker (what cluster_synced_files does) it joins; without it, it is refused."""
    import yaml

    env, _, gcs_port, root, temp_dir = local_head
    assert yaml.safe_load(LOCAL_YAML.read_text())["cluster_synced_files"] == ["~/.ray/auth_token"]
    head_token = Path(env["HOME"]) / ".ray" / "auth_token"
    marker = f"RAYSTUDIES_TEST_WORKER={uuid.uuid4().hex}"   # this node's processes, stopped at the end
    worker_env = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}  # what a fresh node's launcher shell has
    worker_env[marker.split("=")[0]] = marker.split("=")[1]
    commands = _launcher_commands("worker_start_ray_commands", gcs_port, _node_flags(temp_dir))
    try:
        bare = _node_home(root, "worker-without-token")
        refused = _bash(commands, {**worker_env, "HOME": str(bare)}, timeout=120)
        assert refused.returncode != 0, "a worker without the cluster's token joined"
        assert _alive_nodes(env, gcs_port) == 1
        home = _node_home(root, "worker-home")
        (home / ".ray").mkdir()
        (home / ".ray" / "auth_token").write_bytes(head_token.read_bytes())
        joined = _bash(commands, {**worker_env, "HOME": str(home)}, timeout=180)
        assert joined.returncode == 0, joined.stdout[-2000:] + joined.stderr[-2000:]
        assert _alive_nodes(env, gcs_port) == 2
    finally:
        _stop(marker)


def test_a_driver_without_the_auth_setting_fails_at_once_naming_it(local_head, tmp_path: Path) -> None:
    env, _, gcs_port, *_ = local_head
    no_mode = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    proc = subprocess.run([sys.executable, str(REPO / "studies" / "run.py"), "mdn_ramp", "--smoke", "--address",
                           f"127.0.0.1:{gcs_port}", "--storage", str(tmp_path)], env=no_mode, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "RAY_AUTH_MODE=token" in lines[0] and "~/.ray/auth_token" in lines[0], proc.stderr
    wrong = {**env, "RAY_AUTH_TOKEN": "0" * 32}
    proc = subprocess.run([sys.executable, str(REPO / "studies" / "run.py"), "mdn_ramp", "--smoke", "--address",
                           f"127.0.0.1:{gcs_port}", "--storage", str(tmp_path)], env=wrong, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "refused this machine's token (RAY_AUTH_TOKEN)" in proc.stderr, proc.stderr[-2000:]
    # The mode set but no token here at all: Ray's own client would abort the process (a failed C++ check,
    # exit 1, its message on a stderr the probe silences); the driver says it in one line first.
    no_token_home = tmp_path.parent / "no-token-home"
    no_token_home.mkdir()
    proc = subprocess.run([sys.executable, str(REPO / "studies" / "run.py"), "mdn_ramp", "--smoke", "--address",
                           f"127.0.0.1:{gcs_port}", "--storage", str(tmp_path)], env={**env, "HOME": str(no_token_home)},
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "RAY_AUTH_MODE=token, but this machine has no token" in lines[0], proc.stderr
    assert not list(tmp_path.iterdir()), "a refused driver left files behind"


def test_job_submit_smoke_study(local_head, tmp_path: Path) -> None:
    env, dashboard, *_ = local_head
    storage, cache = tmp_path / "results", tmp_path / "cache"
    runtime_env = {"excludes": ["results/", ".git/", ".venv/", ".ci-venv/", "**/__pycache__/", "*.h5"],
                   "env_vars": {"RAYSTUDIES_GIT_COMMIT": "c0ffee" * 6 + "c0ff", "RAYSTUDIES_GIT_DIRTY": "1"}}
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
    # Ray ships no .git with a job: the commit and dirty flag come through env_vars, as cluster/README.md says.
    assert info["platform"]["commit"] == "c0ffee" * 6 + "c0ff" and info["platform"]["dirty"] is True
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == 6
    assert (run_dir / "tables" / "ablation.md").read_text().startswith("# mdn_ramp: ablation report")


def test_job_submit_without_token_is_refused(local_head) -> None:
    """Token auth is really on: a client without the token cannot submit."""
    env, dashboard, *_ = local_head
    no_token = {**env, "HOME": str(Path(env["HOME"]).parent / "other-home")}
    Path(no_token["HOME"]).mkdir(exist_ok=True)
    proc = subprocess.run([str(BIN / "ray"), "job", "list", f"--address={dashboard}"], env=no_token,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
