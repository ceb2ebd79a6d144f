"""A real local Ray cluster started by cluster/local.yaml's own commands: a head on
127.0.0.1 (token auth on, as Ray 2.60 sets it up) and workers, each node in a PID
namespace of its own; a worker joins with the synced token, `ray down`'s command
leaves no Ray process; the smoke study sent with `ray job submit`, its tables
checked. Every process a test started ends with its node's namespace."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tests.cluster.test_cluster_files import launcher_config, node_home, ray_shell

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

# A node's shell: runs the command files the test drops into $CTL, one at a time, until `end` appears.
_NODE_SERVER = r"""cd "$CTL" || exit 1
while [ ! -e end ]; do
  for f in *.cmd; do
    [ -e "$f" ] || continue
    n=${f%.cmd}
    bash -c "$(cat "$f")" > "$n.out" 2>&1 < /dev/null
    echo $? > "$n.rc.tmp" && mv "$n.rc.tmp" "$n.rc" && rm -f "$f"
  done
  sleep 0.1
done
"""


def _unshare() -> list[str]:
    """A PID namespace with its own /proc: `ray stop` there sees and stops only that node's
    Ray, as on a machine of its own (on this shared machine it would stop every Ray).
    The network is this machine's: the nodes reach each other on 127.0.0.1."""
    user = [] if os.getuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--pid", "--fork", "--mount-proc", "--kill-child"]


def _namespaces_work() -> bool:
    try:
        return subprocess.run([*_unshare(), "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Node:
    """One machine of the cluster: its own HOME (tests.cluster.test_cluster_files.node_home),
    its own PID namespace, and a shell that runs commands as Ray's launcher does over SSH."""

    def __init__(self, root: Path, name: str, env: dict) -> None:
        if not _namespaces_work():
            pytest.skip("no PID namespace here (unshare): a node's `ray stop` would stop every Ray on this machine")
        self.home = node_home(root, name)
        self.ctl = root / f"{name}-ctl"
        self.ctl.mkdir()
        self.marker = uuid.uuid4().hex
        self.env = {**env, "HOME": str(self.home), "CTL": str(self.ctl), "RAYSTUDIES_TEST_NODE": self.marker}
        self.proc = subprocess.Popen([*_unshare(), "bash", "-c", _NODE_SERVER], env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.count = 0

    def run(self, line: str, timeout: float = 180) -> tuple[int, str]:
        self.count += 1
        name = f"{self.count:03d}"
        (self.ctl / f"{name}.tmp").write_text(line)
        (self.ctl / f"{name}.tmp").rename(self.ctl / f"{name}.cmd")
        deadline = time.time() + timeout
        while not (self.ctl / f"{name}.rc").exists():
            assert self.proc.poll() is None, "the node's namespace ended"
            assert time.time() < deadline, f"{line[-300:]}: still running after {timeout:.0f} s"
            time.sleep(0.2)
        return int((self.ctl / f"{name}.rc").read_text()), (self.ctl / f"{name}.out").read_text()

    def launch(self, commands: list[str], timeout: float = 180) -> tuple[int, str]:
        """Each command in its own `bash --login -c -i` as the launcher runs it, to the first failure."""
        out = ""
        for cmd in commands:
            rc, text = self.run(ray_shell(cmd), timeout)
            out += text
            if rc != 0:
                return rc, out
        return 0, out

    def processes(self) -> list[str]:
        """Every live process of this node but its shell: pid, state and command line."""
        rc, out = self.run("ps -eo pid=,stat=,comm=,args=")
        assert rc == 0, out
        left = []
        for line in out.splitlines():
            pid, state, comm, *args = line.split(None, 3)
            if pid == "1" or state.startswith("Z") or comm in ("ps", "sleep") or "ps -eo" in line:
                continue
            left.append(line.strip())
        return left

    def close(self) -> None:
        (self.ctl / "end").touch()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()   # --kill-child: the namespace's first process, and so all of it, goes too
            self.proc.wait(timeout=30)
        deadline = time.time() + 30
        while [p for p in _pids_with_marker(self.marker) if p != os.getpid()] and time.time() < deadline:
            time.sleep(0.2)
        assert not [p for p in _pids_with_marker(self.marker) if p != os.getpid()], "a process of the node outlived it"


def _launched(key: str, gcs_port: int, extra: list[str]) -> list[str]:
    """cluster/local.yaml's commands under ``key``, exactly as shipped, with what one shared
    test machine needs changed: the GCS port is a free one, every other port and Ray's temp
    folder are explicit (flags added to `ray start`), and there is no
    ~/ray_bootstrap_config.yaml (the launcher writes it; here no autoscaler launches nodes).
    The launcher's own wrapping is added as Ray 2.60's `ray up` does it: the head's start
    commands get `export RAY_enable_autoscaler_v2=1; ...` (the default), the workers'
    `export RAY_HEAD_IP=...; ...`."""
    from ray.autoscaler._private.util import with_envs, with_head_node_ip

    out = []
    for cmd in launcher_config()[key]:
        cmd = cmd.replace("6379", str(gcs_port)).replace(" --autoscaling-config=~/ray_bootstrap_config.yaml", "")
        if " start " in cmd and "ray" in cmd:
            cmd = " ".join([cmd, *extra])
        out.append(cmd)
    if key == "head_start_ray_commands":
        return with_envs(out, {"RAY_enable_autoscaler_v2": "1", "RAY_CLOUD_INSTANCE_ID": "127.0.0.1",
                               "RAY_NODE_TYPE_NAME": "ray.head.default"})
    if key == "worker_start_ray_commands":
        return with_head_node_ip(out, "127.0.0.1")
    return out


def _node_flags(temp_dir: Path) -> list[str]:
    # Every port free and explicit: another Ray on this machine (the session's
    # in-process one, a study) already holds the default agent ports.
    flags = [f"--{name}={_free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "node-manager-port", "object-manager-port")]
    flags += ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0", "--disable-usage-stats"]
    return [*flags, f"--temp-dir={temp_dir}"]


def _temp_dir() -> Path:
    return Path("/tmp") / f"rs-{uuid.uuid4().hex[:8]}"  # Ray's socket paths must stay short


def _base_env() -> dict:
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    return env


def _start_head(root: Path) -> tuple[Node, int, int, Path]:
    """A head set up and started by cluster/local.yaml's setup_commands, head_setup_commands
    and head_start_ray_commands, in that order, as `ray up` runs them."""
    head = Node(root, "head-home", _base_env())
    gcs_port, dash_port, temp_dir = _free_port(), _free_port(), _temp_dir()
    extra = [*_node_flags(temp_dir), f"--dashboard-port={dash_port}", f"--ray-client-server-port={_free_port()}"]
    rc, out = head.launch([*_launched("setup_commands", gcs_port, extra),
                           *_launched("head_setup_commands", gcs_port, extra),
                           *_launched("head_start_ray_commands", gcs_port, extra)])
    if rc != 0:
        head.close()
        raise AssertionError(out[-4000:])
    return head, gcs_port, dash_port, temp_dir


def _private(home: Path) -> dict:
    return {name: oct(stat.S_IMODE(path.stat().st_mode))
            for name, path in (("~/.ray", home / ".ray"), ("~/.ray/auth_token", home / ".ray" / "auth_token"))}


PRIVATE = {"~/.ray": "0o700", "~/.ray/auth_token": "0o600"}


@pytest.fixture(scope="module")
def local_head(tmp_path_factory: pytest.TempPathFactory):
    """A head started exactly by cluster/local.yaml's commands (see _launched for what a test
    machine changes), in a PID namespace of its own (tests' HOMEs, never this machine's ~/.ray)."""
    tmp_path = tmp_path_factory.mktemp("head")
    head, gcs_port, dash_port, temp_dir = _start_head(tmp_path)
    try:
        assert (head.home / ".ray" / "auth_token").is_file(), "the head's setup made no token"
        client_env = {**_base_env(), "HOME": str(head.home), "RAY_AUTH_MODE": "token"}  # clients: use the token
        _wait_for_job_agent(client_env, f"http://127.0.0.1:{dash_port}")
        yield client_env, f"http://127.0.0.1:{dash_port}", gcs_port, tmp_path, head
    finally:
        head.close()
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)


def _alive_nodes(env: dict, gcs_port: int) -> int:
    probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='127.0.0.1:{gcs_port}', logging_level='ERROR'); "
                            "print(sum(n['Alive'] for n in ray.nodes()))"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    return int(probe.stdout.strip().splitlines()[-1])


def _sync_token(head: Node, worker: Node) -> None:
    """What `cluster_synced_files` does before the worker's setup: the launcher makes the
    folder (`mkdir -p` over SSH, the node's umask 022), rsync -a copies the file, mode kept."""
    (worker.home / ".ray").mkdir(mode=0o755)
    shutil.copy2(head.home / ".ray" / "auth_token", worker.home / ".ray" / "auth_token")


def _start_worker(root: Path, name: str, gcs_port: int, head: Node | None, env: dict) -> tuple[Node, int, str]:
    worker = Node(root, name, env)
    if head is not None:
        _sync_token(head, worker)
    rc, out = worker.launch([*_launched("setup_commands", gcs_port, []),
                             *_launched("worker_start_ray_commands", gcs_port, _node_flags(_temp_dir()))])
    return worker, rc, out


def test_the_head_has_a_private_token_and_runs_autoscaler_v1(local_head) -> None:
    """Under `ray up`'s default (v2), the head still runs autoscaler v1, the one that starts
    local.yaml's workers; the token it made is its user's alone."""
    env, _, gcs_port, _, head = local_head
    assert _private(head.home) == PRIVATE
    probe = subprocess.run([sys.executable, "-c", "from ray._raylet import GcsClient; from ray.autoscaler.v2.utils import "
                            f"is_autoscaler_v2; print(is_autoscaler_v2(fetch_from_server=True, "
                            f"gcs_client=GcsClient(address='127.0.0.1:{gcs_port}')))"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip().splitlines()[-1] == "False", "the head runs autoscaler v2"


def test_a_worker_joins_with_the_launcher_commands_and_the_synced_token(local_head) -> None:
    """setup_commands and worker_start_ray_commands as shipped: with the head's token copied
    to the worker (what cluster_synced_files does) it joins, and its token is private there
    too; without it, it is refused."""
    env, _, gcs_port, root, head = local_head
    assert launcher_config()["cluster_synced_files"] == ["~/.ray/auth_token"]
    launcher_env = _base_env()  # what a fresh node's launcher shell has
    bare, rc, out = _start_worker(root, "worker-without-token", gcs_port, None, launcher_env)
    try:
        assert rc != 0, "a worker without the cluster's token joined"
        assert _alive_nodes(env, gcs_port) == 1
    finally:
        bare.close()
    worker, rc, out = _start_worker(root, "worker-home", gcs_port, head, launcher_env)
    try:
        assert rc == 0, out[-4000:]
        assert _alive_nodes(env, gcs_port) == 2
        assert _private(worker.home) == PRIVATE
    finally:
        worker.close()


def test_ray_down_leaves_no_ray_process_on_any_node(tmp_path: Path) -> None:
    """A head and a worker of their own, started by the launcher files' commands; then what
    `ray down` runs, `ray stop` on the head (in the head's login shell). No Ray process is
    left on the head, nor, once the head's GCS has been gone RAYSTUDIES_HEAD_GONE_S (5 s
    here, 60 by default) on the worker."""
    head, gcs_port, _, temp_dir = _start_head(tmp_path)
    worker = None
    try:
        worker, rc, out = _start_worker(tmp_path, "worker-home", gcs_port, head,
                                        {**_base_env(), "RAYSTUDIES_HEAD_GONE_S": "5"})
        assert rc == 0, out[-4000:]
        assert _alive_nodes({**_base_env(), "HOME": str(head.home), "RAY_AUTH_MODE": "token"}, gcs_port) == 2
        assert worker.processes()
        rc, out = head.run(ray_shell("ray stop"))   # what `ray down` runs on the head
        assert rc == 0, out[-2000:]
        assert head.processes() == []
        deadline = time.time() + 90
        while (left := worker.processes()) and time.time() < deadline:
            time.sleep(2)
        assert left == [], "Ray processes left on the worker after the head stopped:\n" + "\n".join(left)
    finally:
        if worker is not None:
            worker.close()
        head.close()
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)


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
