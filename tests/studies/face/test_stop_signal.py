"""The guards (full disk, lost Ray node) and SIGTERM ask Tune to stop once: a
second SIGINT after Tune's handler has fired would end the fit at once, without
its last snapshot."""

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
