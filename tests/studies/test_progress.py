"""The progress view: plain lines off a terminal, an in-place status line on one."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

ray = pytest.importorskip("ray")
from studies.progress import ProgressLines  # noqa: E402


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _trial(tid: str, status: str = "RUNNING", epoch: int = 0, value: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, status=status, last_result={"epoch": epoch, "loss": value} if value is not None else {})


def _drive(stream: io.StringIO) -> str:
    p = ProgressLines(metric="loss", mode="min", num_samples=2, max_epochs=3, every_s=0.0, stream=stream)
    a, b = _trial("a"), _trial("b")
    p.on_trial_result(1, [a, b], a, {"loss": 0.5, "epoch": 1})
    p.on_step_end(1, [a, b])
    a.last_result = {"epoch": 1, "loss": 0.5}
    p.on_trial_complete(2, [a, b], a)
    p.on_trial_result(3, [a, b], b, {"loss": 0.2, "epoch": 3})
    b.last_result = {"epoch": 3, "loss": 0.2}
    p.on_trial_complete(4, [a, b], b)
    p.on_experiment_end([a, b])
    return stream.getvalue()


def test_plain_lines_when_not_a_terminal() -> None:
    out = _drive(io.StringIO())
    assert "\r" not in out and "\033" not in out
    lines = out.strip().splitlines()
    assert any("trial a stopped by ASHA after 1 epochs, loss=0.5" in ln for ln in lines)
    assert any("trial b complete after 3 epochs, loss=0.2" in ln for ln in lines)
    assert "2/2 trials ended, 0 running" in lines[-1] and "best loss=0.2 (trial b)" in lines[-1]


def test_status_line_redrawn_in_place_on_a_terminal() -> None:
    out = _drive(_Tty())
    assert out.count("\r\033[K") >= 3
    assert out.endswith("\n")
    assert "trial b complete after 3 epochs" in out
