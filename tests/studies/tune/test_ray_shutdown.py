"""Ray's shutdown in the background while the report is written: the run's
ExitStack waits for it before the run folder's lock is released, and a
shutdown that fails still fails the command."""

from __future__ import annotations

import os
import threading
from contextlib import ExitStack

import pytest

from studies.tune.ray_session import _shutdown_in_background


def test_the_stack_waits_for_the_shutdown_that_runs_meanwhile() -> None:
    started, release, done = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def shutdown() -> None:
        started.set()
        assert release.wait(10)
        done.set()
        order.append("ray down")

    with ExitStack() as held:
        held.callback(order.append, "lock released")   # entered first, so released last
        _shutdown_in_background(shutdown, held)
        assert started.wait(10)
        order.append("report written")   # while the shutdown is still waiting
        assert not done.is_set()
        release.set()
    assert done.is_set()
    assert order == ["report written", "ray down", "lock released"]


def test_a_failed_shutdown_is_raised_when_the_stack_closes() -> None:
    def shutdown() -> None:
        raise RuntimeError("raylet did not stop")

    with pytest.raises(RuntimeError, match="raylet did not stop"):
        with ExitStack() as held:
            _shutdown_in_background(shutdown, held)


def _pid_here(folder):
    return [folder / str(os.getpid())]


def test_the_report_waits_for_the_drivers_ending_threads_before_it_forks(tmp_path) -> None:
    """The report forks its plotting process only with no other thread alive; Ray's
    shutdown thread and the import thread end by themselves, so it waits for them
    (both are started as studies.background.EndingThread)."""
    import time

    from studies.background import ending_thread
    from studies.report import write

    ending = ending_thread(lambda: time.sleep(0.3), "ray-shutdown")
    others = [t for t in threading.enumerate() if t is not ending and t is not threading.main_thread()]
    wait = write._in_background(_pid_here, tmp_path)
    assert not ending.is_alive()   # waited for
    ran_in = wait()
    if not others:   # nothing else alive in this test process (no Ray here): it forked
        assert ran_in != [tmp_path / str(os.getpid())]
