"""When StallGuard ends a trial: its limits, automatic and set (the real hang
is in tests/faults/test_stalled_trial.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from studies.tune import stall_guard


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id, self.status = trial_id, "RUNNING"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    state = {"now": 1000.0, "killed": []}
    monkeypatch.setattr(stall_guard.time, "monotonic", lambda: state["now"])
    monkeypatch.setattr(stall_guard, "kill_trial_actor", lambda t: state["killed"].append(t.trial_id))
    monkeypatch.setattr(stall_guard, "trial_folder", lambda t: str(tmp_path))
    return state


def _step(guard: stall_guard.StallGuard, clock: dict, seconds: float, trials: list[_Trial]) -> None:
    clock["now"] += seconds
    guard.on_step_end(0, trials)


def test_automatic_limit_is_twenty_times_the_longest_gap_and_at_least_ten_minutes(clock: dict, tmp_path: Path) -> None:
    guard = stall_guard.StallGuard()
    a, b = _Trial("a"), _Trial("b")
    _step(guard, clock, 1, [a, b])                 # clocks start
    assert guard.limit_s() is None
    clock["now"] += 40
    guard.on_trial_result(0, [a, b], a, {})       # a 40 s epoch
    assert guard.limit_s() == 800.0
    _step(guard, clock, 700, [a, b])               # b silent 740 s: under 800
    assert clock["killed"] == []
    _step(guard, clock, 100, [a, b])               # b silent 840 s; a silent 800 s (not more)
    assert clock["killed"] == ["b"]
    assert "no result for 840 s (limit 800 s" in (tmp_path / "stalled.txt").read_text()
    short = stall_guard.StallGuard()
    short._longest = 1.0
    assert short.limit_s() == stall_guard.AUTO_FLOOR_S


def test_a_set_limit_holds_from_the_start_and_again_after_a_retry(clock: dict) -> None:
    guard = stall_guard.StallGuard(timeout_s=5)
    t = _Trial("t")
    _step(guard, clock, 1, [t])
    _step(guard, clock, 6, [t])
    assert clock["killed"] == ["t"]
    _step(guard, clock, 1, [t])                    # retried: RUNNING again, timed afresh
    _step(guard, clock, 4, [t])
    assert clock["killed"] == ["t"]
    _step(guard, clock, 2, [t])
    assert clock["killed"] == ["t", "t"]
    t.status = "TERMINATED"
    _step(guard, clock, 60, [t])
    assert clock["killed"] == ["t", "t"]


def test_a_retry_after_a_long_wait_is_timed_from_its_start_and_the_wait_is_no_epoch(clock: dict) -> None:
    """A worker dies (OOM), and the retry waits 5 minutes for resources: it must not be
    ended the moment it starts, nor the wait count as the study's longest gap."""
    guard = stall_guard.StallGuard(timeout_s=120)
    t = _Trial("t")
    guard.on_trial_start(0, [t], t)
    clock["now"] += 10
    guard.on_trial_result(0, [t], t, {})
    guard.on_trial_recover(0, [t], t)              # its worker died; Tune will retry it
    t.status = "PENDING"
    _step(guard, clock, 300, [t])                  # waiting for resources
    t.status = "RUNNING"
    guard.on_trial_start(0, [t], t)
    _step(guard, clock, 2, [t])
    assert clock["killed"] == []
    clock["now"] += 10
    guard.on_trial_result(0, [t], t, {})
    assert guard._longest == pytest.approx(12.0)   # not the 312 s across the failure
