"""The guards (full disk, lost Ray node) and SIGTERM ask Tune to stop once: a
second SIGINT after Tune's handler has fired would end the fit at once, without
its last snapshot. And Ray's processes, started with SIGTERM blocked, leave a
SIGTERM sent to the whole job to the driver."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

pytest.importorskip("ray")
from studies.signals import stop_tune_cleanly  # noqa: E402
from studies.tune import run_folder_callbacks  # noqa: E402


@pytest.fixture
def tune_handler():  # noqa: ANN201
    """A SIGINT handler that behaves as Tune's: it records the stop, then puts the previous one back."""
    fired: list[int] = []
    before = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):  # noqa: ANN001, ANN202
        fired.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    try:
        yield fired
    finally:
        signal.signal(signal.SIGINT, before)


def test_tune_is_asked_once(tune_handler: list[int]) -> None:
    assert stop_tune_cleanly() is True and tune_handler == [signal.SIGINT]
    assert stop_tune_cleanly() is False and tune_handler == [signal.SIGINT]   # no KeyboardInterrupt either


def test_a_disk_that_stays_full_stops_the_study_once(tune_handler: list[int], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 100.0}
    monkeypatch.setattr(run_folder_callbacks.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(run_folder_callbacks, "low_space", lambda path: f"{path}: disk nearly full")
    guard = run_folder_callbacks.FreeSpaceGuard()
    monkeypatch.setattr(guard, "_local_run_dir", lambda: tmp_path)
    for _ in range(5):   # Tune takes seconds to stop; the guard checks every second meanwhile
        clock["now"] += 1.5
        guard.on_step_end(0, [])
    assert tune_handler == [signal.SIGINT]


def _sigterm_blocked(pid: int) -> bool:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("SigBlk:"))
    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc")
def test_processes_started_in_the_block_keep_sigterm_blocked_and_the_driver_does_not() -> None:
    """What a local Ray's GCS and raylet (and the workers the raylet starts) inherit:
    a SIGTERM sent to the whole job reaches the driver alone."""
    import subprocess
    import sys

    from studies.signals import sigterm_blocked_in_children

    code = "import sys; sys.stdin.read()"   # lives until its stdin closes
    with sigterm_blocked_in_children() as held:
        inside = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    outside = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        assert _sigterm_blocked(inside.pid) and not _sigterm_blocked(outside.pid)
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])   # this thread's mask is back
        assert not held.arrived
    finally:
        for proc in (inside, outside):
            proc.communicate(timeout=30)


def test_a_sigterm_that_arrives_in_the_block_is_taken_off_and_said() -> None:
    """Ray's handler (installed by ray.init, inside the block) would exit with code 15; the caller decides instead."""
    import threading

    from studies.signals import sigterm_blocked_in_children

    handled: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: handled.append(signum))
    try:
        with sigterm_blocked_in_children() as held:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)   # to this (blocking) thread
        assert held.arrived and handled == [] and signal.SIGTERM not in signal.sigpending()
    finally:
        signal.signal(signal.SIGTERM, before)
