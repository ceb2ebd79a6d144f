"""Start or join Ray, with one clear error when that is not possible."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

from studies._compat import end_local_ray, kill_ray_processes, local_gcs
from studies.background import ending_thread
from studies.errors import EXIT_RAY_LOST, Terminated, UserError
from studies.signals import HeldSigterm, sigterm_blocked_in_children


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when host:port does not answer."""
    target = address.removeprefix("ray://")
    if address == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise UserError(f"--address {address}: cannot reach a Ray cluster there ({exc.__class__.__name__}: {exc})") from None


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Ray's C++ client logs its own warning line to fd 2 before the Python error comes up."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _token_source() -> str:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"


def _has_token() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    path = Path(os.path.expanduser(os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"))
    try:
        info = path.stat()
        if info.st_mode & 0o077 and info.st_uid == os.getuid():  # whoever reads it can submit jobs as us
            path.chmod(0o600)
            print(f"warning: {path} was readable by other users (mode {info.st_mode & 0o777:o}); made it 0600",
                  file=sys.stderr)
        return bool(path.read_text().strip())
    except OSError:
        return False


def check_auth(address: str) -> None:
    """One GCS call before ``ray.init``: a cluster with token authentication
    refuses a client without the token at once, where ``ray.init`` would retry
    for ~30 s, print a warning per try and end with "Failed to connect".
    With RAY_AUTH_MODE=token and no token on this machine, Ray's own client
    aborts the process (a failed C++ check, exit 1): that is said first."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" and not _has_token():
        raise UserError(f"--address {address}: RAY_AUTH_MODE=token, but this machine has no token "
                        f"({_token_source()} is missing or empty; or set RAY_AUTH_TOKEN): copy the head's "
                        "~/.ray/auth_token here")
    target = address.removeprefix("ray://")
    if address == "auto" or address.startswith("ray://") or ":" not in target:
        return
    from ray.exceptions import AuthenticationError

    from studies._compat import connect_gcs

    try:
        with _stderr_silenced():
            connect_gcs(target)
    except AuthenticationError:
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            raise UserError(f"--address {address}: the cluster uses token authentication; set RAY_AUTH_MODE=token and "
                            "put the head's token in ~/.ray/auth_token (or RAY_AUTH_TOKEN) on this machine") from None
        raise UserError(f"--address {address}: the cluster refused this machine's token ({_token_source()}); "
                        "copy the head's ~/.ray/auth_token here") from None
    except Exception:
        return  # not an auth problem: ray.init reports it in its own words


def _worker_logging() -> Any:
    """Workers log warnings and errors only (not one line per checkpoint)."""
    import ray

    return ray.LoggingConfig(log_level="WARNING")


# Never shipped to workers: run data, environments, version control.
_CODE_EXCLUDES = ["results/", ".git/", ".venv/", ".ci-venv/", "**/__pycache__/", "*.h5", ".cache/", ".mypy_cache/",
                  ".ruff_cache/", ".pytest_cache/", ".benchmarks/"]   # tool caches: not code, often tens of MB


def _code_runtime_env(root: Path) -> dict | None:
    """Ship this checkout to the cluster's workers (Ray's working_dir), unless we
    already run as a Ray job (``ray job submit --working-dir``: the job's own
    runtime_env does it) or this is not a checkout (the package is installed on
    the nodes, as cluster/cluster.yaml does)."""
    if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or not (root / "pyproject.toml").is_file() or not (root / "core").is_dir():
        return None
    return {"working_dir": str(root), "excludes": _CODE_EXCLUDES}


def machine_count() -> int:
    """Distinct machines among the cluster's live nodes (several Ray nodes on one
    machine, as in ray.cluster_utils.Cluster, share its disk)."""
    import ray

    return len({n.get("NodeManagerAddress") for n in ray.nodes() if n.get("Alive")})


class GcsWatchdog:
    """Ends the driver when the GCS of the local Ray it started dies (SIGKILLed, OOM-killed,
    crashed). Nothing else notices: NodeGuard's question needs the GCS, and Tune's loop
    blocks in Ray's client, which waits a minute for it, then ends the driver with exit 1,
    run.json "running" and the raylet, its agents and workers left alive. Polled every
    ``POLL_S`` seconds in a daemon thread; once it is gone: every process of that Ray is
    SIGKILLed (kill_ray_processes), ``on_lost`` says so (the driver marks run.json
    "interrupted" and prints its one line), and the process exits with EXIT_RAY_LOST at
    once (``os._exit``: the main thread is stuck in Ray's client). What is on disk is as
    after a SIGKILL of the driver: Tune's last periodic snapshot, which --resume continues.

    ``stop()`` (before the driver ends Ray itself) turns it off: a GCS ended on purpose
    is no alarm; one found dead by then ends the process the same way."""

    POLL_S = 0.5

    def __init__(self, node: Any, gcs: Any, logs: str, on_lost: Callable[[str], None]) -> None:
        self._node, self._gcs, self._logs, self._on_lost = node, gcs, logs, on_lost
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._fired = False
        self._thread = threading.Thread(target=self._watch, name="gcs-watchdog", daemon=True)

    def start(self) -> GcsWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            fired = self._fired
        if fired:   # the process is ending (os._exit in the watchdog): nothing more may run here
            threading.Event().wait()
        self._thread.join()
        code = self._gcs.poll()
        if code is not None:   # it died before the driver ended it (the main thread got here first, raising)
            self._fired = True
            self._end(code)

    def _watch(self) -> None:
        while not self._stopped.wait(self.POLL_S):
            code = self._gcs.poll()
            if code is None:
                continue
            with self._lock:
                if self._stopped.is_set():
                    return
                self._fired = True
            self._end(code)

    def _end(self, code: int) -> None:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"exit code {code}"
        with suppress(BaseException):   # the process ends just below, whatever happens here
            kill_ray_processes(self._node)
        try:
            self._on_lost(f"gcs_server pid {self._gcs.pid}, {how}; see {self._logs}")
        except BaseException as exc:  # noqa: BLE001 (still one line, and the exit code)
            print(f"error: Ray's GCS died (gcs_server pid {self._gcs.pid}, {how}; see {self._logs}); "
                  f"the study stopped ({exc.__class__.__name__}: {exc})", file=sys.stderr)
        finally:
            for stream in (sys.stdout, sys.stderr):
                with suppress(BaseException):
                    stream.flush()
            os._exit(EXIT_RAY_LOST)


@contextmanager
def ray_session(address: str | None, *, num_cpus: int | None = None, num_gpus: int | None = None,
                shutdown_later: ExitStack | None = None,
                on_gcs_lost: Callable[[str], None] | None = None) -> Iterator[dict[str, float]]:
    """Yield the cluster's resources. Without an address this always starts a
    fresh local Ray (``address="local"``): a stale ``ray_current_cluster`` file
    left by a crashed run must not make us attach to a cluster that is gone.

    ``on_gcs_lost``: with a local Ray, a GcsWatchdog ends the process (exit
    EXIT_RAY_LOST) if its GCS dies, after calling this with what died.

    ``shutdown_later``: Ray's shutdown runs in a thread and that stack waits for
    it when it closes. Stopping a local Ray is a second or more of waiting for
    its processes to exit, which the caller spends starting the report instead
    (the report waits for it before it forks its plotting process)."""
    import ray

    from studies._compat import filter_worker_output
    from studies.quiet import environ, quiet_ray_start, without_worker_exit_noise

    quiet_ray_start()
    scoped = ExitStack()  # environment changes made for this session, undone when it ends
    held = HeldSigterm()
    if address:
        check_address(address)
        check_auth(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, logging_config=_worker_logging(),
                     runtime_env=_code_runtime_env(Path(__file__).resolve().parents[2]))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise UserError(f"--address {address}: cannot join the Ray cluster ({first})") from None
    else:
        # Local workers inherit the driver's environment: make this checkout
        # importable in them even when it is not pip-installed.
        # The working directory too: a user's own trainable module is found there.
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        wanted = [p for p in (str(Path(__file__).resolve().parents[2]), os.getcwd()) if p not in paths]
        if wanted:
            scoped.enter_context(environ(PYTHONPATH=os.pathsep.join([*wanted, *paths])))
        # Ray's processes (and the workers its raylet starts) inherit a blocked SIGTERM: a SIGTERM
        # sent to the whole job (timeout's to the group, Slurm's to every pid) reaches the driver alone,
        # which stops Tune cleanly while they still run; a trial's worker is not killed under it. They
        # are ended by SIGKILL in order (studies._compat.end_local_ray). A cluster joined with
        # --address is not ours: its processes are left as they are.
        try:
            with sigterm_blocked_in_children() as held:
                ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                         logging_level=logging.WARNING, logging_config=_worker_logging())
        except Exception as exc:  # Ray raises a bare Exception when its processes do not come up
            scoped.close()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise UserError(f"could not start a local Ray ({first}); is the machine overloaded, or out of /tmp space?") from None
    filter_worker_output(without_worker_exit_noise)
    local = local_gcs() if not address and on_gcs_lost is not None else None
    watchdog = GcsWatchdog(*local, on_gcs_lost).start() if local is not None and on_gcs_lost is not None else None
    with scoped:
        try:
            if held.arrived:   # while Ray started, under the handler ray.init installs (it exits with code 15)
                raise Terminated()
            yield dict(ray.cluster_resources())
        finally:
            if watchdog is not None:
                watchdog.stop()   # the GCS is ended on purpose now
            if shutdown_later is None:
                end_local_ray()
            else:
                _shutdown_in_background(end_local_ray, shutdown_later)


def _shutdown_in_background(shutdown: Any, later: ExitStack) -> None:
    """Run ``shutdown`` in a thread; ``later`` joins it, and raises what it raised.

    Why the garbage collector is run first and held off until the shutdown
    ends: freeing a Ray handle (an object ref, an actor handle: Tune leaves
    them in reference cycles) calls into Ray's core worker, and a call that
    lands while another thread shuts it down makes Ray end the whole process
    with exit code 1 (seen once under load: an interrupted study exited 1
    instead of 130)."""
    failed: list[BaseException] = []
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()

    def stop() -> None:
        try:
            shutdown()
        except BaseException as exc:  # raised again in the caller's thread
            failed.append(exc)
        finally:
            if collecting:
                gc.enable()

    stopping = ending_thread(stop, "ray-shutdown")   # the report waits for it before it forks

    def join() -> None:
        stopping.join()
        if failed:
            raise failed[0]

    later.callback(join)
