"""The cluster launcher files: valid for the installed Ray's own validator, and
their commands as Ray runs them (each in `bash --login -c -i`, built by Ray's own
command runner) on node HOMEs made here: the nodes' environment file, which a node
already set up reads too, the token's modes, and cluster/README.md's token fetch."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
BIN = Path(sys.executable).parent


def launcher_config(name: str = "local.yaml") -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def node_home(root: Path, name: str) -> Path:
    """A node's HOME: the image's dotfiles (/etc/skel), this checkout at ~/raystudies (the
    launcher's file_mounts), and a ~/raystudies-venv whose `ray` is this environment's and
    whose `pip` does nothing (the setup commands' install would change this environment)."""
    home = root / name
    home.mkdir()
    for dotfile in (Path("/etc/skel").iterdir() if Path("/etc/skel").is_dir() else []):
        if dotfile.is_file():
            (home / dotfile.name).write_bytes(dotfile.read_bytes())
    (home / "raystudies").symlink_to(REPO)
    venv = home / "raystudies-venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "activate").write_text(f'PATH="{BIN}:$PATH"; export PATH\n')
    (venv / "pip").write_text("#!/bin/sh\nexit 0\n")
    (venv / "pip").chmod(0o755)
    for tool in ("ray", "python", "python3"):
        (venv / tool).symlink_to(BIN / tool)
    return home


def ray_shell(cmd: str) -> str:
    """The line Ray's launcher sends over SSH for one command (its SSHCommandRunner):
    `bash --login -c -i 'source ~/.bashrc; ... && (CMD)'`, for the node's shell to run."""
    from ray.autoscaler._private.command_runner import _with_interactive

    return " ".join(_with_interactive(cmd))


def run_on_node(commands: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    """``commands`` one after the other as the launcher runs them (each in its own login
    shell), stopping at the first that fails, as the launcher does."""
    script = "\n".join(f"{ray_shell(c)} || exit $?" for c in commands)
    return subprocess.run(["bash", "-c", "umask 022\n" + script], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def clean_env(home: Path) -> dict:
    env = {**os.environ, "HOME": str(home)}
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    return env


@pytest.mark.parametrize("name", ["cluster.yaml", "local.yaml"])
def test_launcher_config_is_valid(name: str) -> None:
    from ray.autoscaler._private.commands import prepare_config
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load((CLUSTER / name).read_text())
    validate_config(prepare_config(config))
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "raystudies" in setup       # the project is installed on every node
    assert any("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"])  # dashboard on loopback


def test_both_launcher_files_run_the_same_node_commands() -> None:
    """The tests run local.yaml's commands; cluster.yaml's are the same (its setup adds
    its mount and torch lines, and nothing else differs)."""
    local, aws = launcher_config("local.yaml"), launcher_config("cluster.yaml")
    for key in ("head_setup_commands", "cluster_synced_files", "head_start_ray_commands", "worker_start_ray_commands"):
        assert aws[key] == local[key], key
    shared = [c for c in local["setup_commands"] if "/shared" not in c]
    assert [c for c in aws["setup_commands"] if c in shared] == shared


def _with_credentials(commands: list[str], values: dict[str, str]) -> list[str]:
    """The setup commands as cluster/README.md says to add bucket credentials: each
    `export NAME=value` next to RAY_AUTH_MODE's, in the line that writes it."""
    out, edited = [], 0
    for cmd in commands:
        if "'export RAY_AUTH_MODE=token'" in cmd:      # printf '%s\n' 'export ...' 'export ...'
            cmd = cmd.replace("'export RAY_AUTH_MODE=token'",
                              " ".join(["'export RAY_AUTH_MODE=token'", *(f"'export {k}={v}'" for k, v in values.items())]))
            edited += 1
        elif "export RAY_AUTH_MODE=token" in cmd:      # a printf format: export ...\nexport ...\n
            cmd = cmd.replace("export RAY_AUTH_MODE=token",
                              "\\n".join(["export RAY_AUTH_MODE=token", *(f"export {k}={v}" for k, v in values.items())]))
            edited += 1
        out.append(cmd)
    assert edited == 1, "no setup command (or more than one) writes the nodes' RAY_AUTH_MODE=token"
    return out


def test_credentials_added_later_reach_a_node_already_set_up(tmp_path: Path) -> None:
    """Setup as shipped, then twice more with bucket credentials added to the launcher
    file (new values the second time): a login shell on that node, as `ray start` and
    `ray exec` run, has the newest values. (The `~/.bashrc` line was written once.)"""
    home = node_home(tmp_path, "node")
    env = clean_env(home)
    setup = launcher_config()["setup_commands"]
    first = run_on_node(setup, env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    for secret in ("first/Key+1=", "second/Key+2="):
        again = run_on_node(_with_credentials(setup, {"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": secret}),
                            env)
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
        shell = run_on_node(['echo "seen: $AWS_ACCESS_KEY_ID $AWS_SECRET_ACCESS_KEY $RAY_AUTH_MODE $(command -v ray)"'],
                            env)
        seen = [line for line in shell.stdout.splitlines() if line.startswith("seen: ")]
        assert seen == [f"seen: AKIATEST {secret} token {BIN / 'ray'}"], shell.stdout + shell.stderr[-1000:]
    files = [p for p in home.iterdir() if p.is_file() and "AKIATEST" in p.read_text(errors="replace")]
    assert files and all(mode(p) == 0o600 for p in files), [(p.name, oct(mode(p))) for p in files]
    assert "AKIATEST" not in (home / ".bashrc").read_text()


def _readme_token_fetches() -> list[str]:
    """cluster/README.md's commands that fetch the token from the head (in code blocks or inline)."""
    text = (CLUSTER / "README.md").read_text()
    found = [line.split("  #")[0].strip() for line in text.splitlines()
             if "rsync-down" in line and "auth_token" in line and "`" not in line]
    found += [m for m in re.findall(r"`([^`\n]+)`", text) if "rsync-down" in m and "auth_token" in m]
    return found


def test_the_readme_token_fetch_makes_a_private_token_on_a_fresh_client(tmp_path: Path) -> None:
    """The fetch as cluster/README.md writes it, on a client with no ~/.ray and umask 022;
    `ray` stands in for `ray rsync-down` with a plain copy (mode 0644) of the head's token.
    The head's path reaches Ray unexpanded, and ~/.ray and the token are this user's alone."""
    commands = _readme_token_fetches()
    assert commands, "cluster/README.md has no token fetch"
    head_token = tmp_path / "head-token"
    head_token.write_text("a" * 32)
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "ray").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RAY_ARGS"\n[ "$1" = rsync-down ] || exit 3\n'
                              'cp "$HEAD_TOKEN" "$4"\n')
    (stub / "ray").chmod(0o755)
    for i, command in enumerate(commands):
        home = tmp_path / f"client-{i}"
        home.mkdir()
        env = {**clean_env(home), "PATH": f"{stub}:{os.environ['PATH']}", "RAY_ARGS": str(tmp_path / f"args-{i}"),
               "HEAD_TOKEN": str(head_token)}
        proc = subprocess.run(["bash", "-c", "umask 022\n" + command], env=env, capture_output=True, text=True,
                              timeout=60, cwd=REPO)
        assert proc.returncode == 0, f"{command}: {proc.stderr}"
        args = (tmp_path / f"args-{i}").read_text().splitlines()
        assert args[0] == "rsync-down" and args[1].startswith("cluster/") and args[2] == "~/.ray/auth_token", args
        assert (home / ".ray" / "auth_token").read_text() == "a" * 32
        assert mode(home / ".ray") == 0o700 and mode(home / ".ray" / "auth_token") == 0o600, command


def test_the_driver_makes_a_token_others_can_read_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """studies/run.py --address with RAY_AUTH_MODE=token: this user's token file that other
    users can read (a copy made before, 0644) is made 0600, with one warning line."""
    from studies.tune.ray_session import check_auth

    (tmp_path / ".ray").mkdir()
    token = tmp_path / ".ray" / "auth_token"
    token.write_text("b" * 32)
    token.chmod(0o644)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    check_auth("auto")
    assert mode(token) == 0o600
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "readable by other users" in lines[0] and "0600" in lines[0], lines
    check_auth("auto")
    assert not capsys.readouterr().err
