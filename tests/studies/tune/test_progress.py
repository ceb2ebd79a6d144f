"""The progress view: plain lines off a terminal, an in-place status line on one."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

ray = pytest.importorskip("ray")
from studies.tune.progress import ProgressLines, Rungs, expected_remaining_epochs  # noqa: E402


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
    assert "2/2 trials ended, 0 running" in lines[-1] and "best loss at 3 epochs=0.2 (trial b)" in lines[-1]


def test_status_line_redrawn_in_place_on_a_terminal() -> None:
    out = _drive(_Tty())
    assert out.count("\r\033[K") >= 3
    assert out.endswith("\n")
    assert "trial b complete after 3 epochs" in out


def test_best_is_the_value_at_the_full_budget() -> None:
    """A trial's early epoch beating everyone is not "best": Optuna holds the full-budget value."""
    out = io.StringIO()
    p = ProgressLines(metric="loss", mode="min", num_samples=2, max_epochs=3, every_s=0.0, stream=out)
    a, b = _trial("a"), _trial("b")
    p.on_trial_result(1, [a, b], a, {"loss": 0.01, "epoch": 1})   # stopped early with a low value
    a.last_result = {"epoch": 1, "loss": 0.01}
    p.on_trial_complete(2, [a, b], a)
    assert "no trial at 3 epochs yet" in out.getvalue().splitlines()[-1]
    for epoch, value in ((1, 0.5), (2, 0.3), (3, 0.2)):
        p.on_trial_result(3, [a, b], b, {"loss": value, "epoch": epoch})
    b.last_result = {"epoch": 3, "loss": 0.2}
    p.on_trial_complete(4, [a, b], b)
    assert "best loss at 3 epochs=0.2 (trial b)" in out.getvalue().splitlines()[-1]


def test_designed_runs_are_named_by_label_and_seed() -> None:
    out = io.StringIO()
    p = ProgressLines(metric="loss", mode="min", num_samples=1, max_epochs=1, every_s=0.0, stream=out, show_best=False)
    t = SimpleNamespace(trial_id="d6e12_00006", status="RUNNING", config={"confirm_label": "top2", "seed": 1001},
                        last_result={"epoch": 1, "loss": 0.3})
    p.on_trial_complete(1, [t], t)
    text = out.getvalue()
    assert "top2 (seed 1001) complete after 1 epochs" in text and "d6e12" not in text and "best" not in text


def test_asha_milestones_are_rays() -> None:
    from ray.tune.schedulers import ASHAScheduler

    for grace, eta, max_t in [(2, 3, 18), (1, 3, 4), (1, 2, 10), (3, 4, 100), (1, 3, 9)]:
        asha = ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=grace, reduction_factor=eta, metric="x", mode="min")
        rays = sorted(r[0] for r in asha._brackets[0]._rungs)
        assert Rungs(grace, eta, max_t).milestones == rays   # fractional factors: tests/studies/spec/test_rungs.py
        assert Rungs(grace, eta, max_t).stopping_epochs == [m for m in rays if m < max_t]


def test_expected_remaining_epochs_known_values() -> None:
    rungs = Rungs(1, 3, 9)                                              # decisions at epochs 1 and 3
    assert expected_remaining_epochs(0, 9, rungs) == pytest.approx(1 + 2 / 3 + 6 / 9)
    assert expected_remaining_epochs(2, 9, rungs) == pytest.approx(1 + 6 / 3)  # surely to 3, then 1 in 3 go on
    assert expected_remaining_epochs(3, 9, rungs) == pytest.approx(6)
    assert expected_remaining_epochs(0, 9, rungs, {1: 0.5}) == pytest.approx(1 + 0.5 * 2 + 0.5 / 3 * 6)
    assert expected_remaining_epochs(4, 9, None) == 5


def test_time_left_from_remaining_epochs_and_workers() -> None:
    """8 trials, 2 workers, 2 s per epoch, no early stopping, 4 epochs each:
    after 2 trials ended (and 2 running at epoch 1), 2*3 + 4*4 = 22 epochs
    remain: 22 * 2 s / 2 workers = 22 s."""
    p = ProgressLines(metric="loss", mode="min", num_samples=8, max_epochs=4, workers=2, every_s=0.0, stream=io.StringIO())
    assert p.seconds_left([]) is None                                   # nothing timed yet
    done = [_trial(f"d{i}") for i in range(2)]
    running = [_trial(f"r{i}") for i in range(2)]
    for t in done:
        for e in range(1, 5):
            p.on_trial_result(0, [], t, {"loss": 1.0, "epoch": e, "time_this_iter_s": 2.0})
        t.last_result = {"epoch": 4, "loss": 1.0}
        p.on_trial_complete(0, done + running, t)
    for t in running:
        p.on_trial_result(0, [], t, {"loss": 1.0, "epoch": 1, "time_this_iter_s": 2.0})
    assert p.seconds_left(running) == pytest.approx(22.0)
    q = ProgressLines(metric="loss", mode="min", num_samples=3, max_epochs=4, workers=4, every_s=0.0, stream=io.StringIO())
    ended, slow = [_trial(f"e{i}") for i in range(2)], _trial("slow")
    for t in ended:
        for e in range(1, 5):
            q.on_trial_result(0, [], t, {"loss": 1.0, "epoch": e, "time_this_iter_s": 2.0})
        t.last_result = {"epoch": 4, "loss": 1.0}
        q.on_trial_complete(0, ended, t)
    q.on_trial_result(0, [], slow, {"loss": 1.0, "epoch": 1, "time_this_iter_s": 2.0})
    assert q.seconds_left([slow]) == pytest.approx(6.0)                 # one trial left: its 3 epochs, not 3/4 of them


def test_time_left_counts_what_each_trial_costs_outside_its_epochs() -> None:
    """Trials of 3 one-millisecond epochs, 2 workers: 100 ended in 50 s, so each
    took about 1 s of a worker (actor turnover, set-up, the searcher), not 3 ms:
    100 worker-seconds over the 102 trials started. With 898 not started, about
    898 * 0.98 s / 2 workers = 440 s remain (the epochs alone would say 1.4 s)."""
    p = ProgressLines(metric="loss", mode="min", num_samples=1000, max_epochs=3, workers=2, every_s=0.0, stream=io.StringIO())
    p.start = 1000.0
    running = [_trial("r0"), _trial("r1")]
    for i in range(100):
        t = _trial(f"d{i}")
        for e in range(1, 4):
            p.on_trial_result(0, [], t, {"loss": 1.0, "epoch": e, "time_this_iter_s": 0.001})
        t.last_result = {"epoch": 3, "loss": 1.0}
        p.on_trial_complete(0, running, t)
    for t in running:
        p.on_trial_result(0, [], t, {"loss": 1.0, "epoch": 1, "time_this_iter_s": 0.001})
    overhead = (50.0 * 2 - 0.302) / 102
    assert p.overhead_per_trial(102, now=1050.0) == pytest.approx(overhead)
    assert p.seconds_left(running, now=1050.0) == pytest.approx((898 * (3 * 0.001 + overhead) + 2 * 2 * 0.001) / 2)
    assert p.seconds_left(running, now=1050.0) == pytest.approx(440, rel=0.01)
