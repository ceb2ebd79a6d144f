from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN_PY = REPO / "studies" / "run.py"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python studies/run.py ...` in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}
    full_env.pop("RAY_ADDRESS", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(RUN_PY), *args], cwd=cwd or REPO, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data-cache")


def start_cli(args: list[str], cwd: Path | None = None, **extra_env: str) -> subprocess.Popen:
    """Start `python studies/run.py ...` in its own process group (so a test can
    signal the driver alone, or kill it together with the local Ray it started)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra_env}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, str(RUN_PY), *args], cwd=cwd or REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    """Poll for an observable event (a file, a line, a snapshot entry), never sleep for a guess."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def user_study(folder: Path, package: str, code: str, spec: str, space: str = "x: {type: float, low: 0.0, high: 1.0}\n") -> Path:
    """A researcher's own trainable as a package in ``folder``, with its spec
    (``trainable: <package>.fn:train``, search space space.yaml); returns the spec's path."""
    import textwrap

    (folder / package).mkdir()
    (folder / package / "__init__.py").write_text("")
    (folder / package / "fn.py").write_text(textwrap.dedent(code))
    (folder / "space.yaml").write_text(space)
    path = folder / f"{package}.yaml"
    path.write_text(f"trainable: {package}.fn:train\nsearch_space: space.yaml\n" + textwrap.dedent(spec))
    return path
