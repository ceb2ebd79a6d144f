"""studies/spec/rungs.py (issue 31): ASHA's rungs in one place, at Ray's own
epochs, fractional reduction factors included, and the progress lines, the
report and MO-ASHA all on those epochs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler

from studies import _compat
from studies.report.ablation import asha_rungs, build_ablation
from studies.runs.trials import STATUS_COMPLETE, RunTrials
from studies.spec.rungs import Rungs
from studies.tune import progress
from studies.tune.mo_asha import MultiObjectiveASHA
from studies.tune.progress import ProgressLines, expected_remaining_epochs

GRACES = range(1, 6)
FACTORS = (2, 2.2, 2.5, 3, 3.7, 4)   # the spec requires rf >= 2


def _grid() -> list[tuple[int, float, int]]:
    return [(grace, rf, max_t) for grace in GRACES for rf in FACTORS for max_t in range(grace, 101)]


def _ray_decision_epochs(grace: int, rf: float, max_t: int) -> list[int]:
    """The epochs at which Ray's own ASHAScheduler records a trial at a rung, for a
    trial reporting every epoch 1..max_t, driven as Tune drives it (on_trial_result
    per epoch; on_trial_complete with the last result once it is stopped at max_t)."""
    asha = ASHAScheduler(time_attr="epoch", metric="loss", mode="min", max_t=max_t, grace_period=grace,
                         reduction_factor=rf)
    trial = SimpleNamespace(trial_id="t")
    asha.on_trial_add(None, trial)

    def recorded() -> int:
        return sum("t" in rung for bracket in _compat.asha_rungs(asha) for _, rung in bracket)

    epochs = []
    for epoch in range(1, max_t + 1):
        before = recorded()
        result = {"epoch": epoch, "loss": 1.0 / epoch}
        if asha.on_trial_result(None, trial, result) == "STOP":
            asha.on_trial_complete(None, trial, result)
        if recorded() > before:
            epochs.append(epoch)
    return epochs


# --- the type itself against Ray -------------------------------------------------------------

def test_the_issue_case() -> None:
    rungs = Rungs(1, 2.5, 40)
    assert rungs.milestones == [1, 2.5, 6.25, 15.625, 39.0625]
    assert rungs.epochs == [1, 3, 7, 16, 40]
    assert rungs.stopping_epochs == [1, 3, 7, 16]
    assert rungs.report_epochs == [1, 3, 7, 16, 40]
    assert _ray_decision_epochs(1, 2.5, 40) == [1, 3, 7, 16, 40]


def test_a_milestone_just_above_an_integer_is_decided_one_epoch_later_as_ray_does() -> None:
    # Ray compares the epoch with the float milestone exactly: no tolerance.
    assert 25 * 2.2 == 55.00000000000001 and 25 * 2.2 ** 2 == 121.00000000000001
    assert Rungs(25, 2.2, 150).epochs == [25, 56, 122] == _ray_decision_epochs(25, 2.2, 150)


def test_milestones_are_ray_brackets() -> None:
    for grace, rf, max_t in _grid():
        rungs = Rungs(grace, rf, max_t)
        assert rungs.milestones == _compat.ray_bracket_milestones(grace, max_t, rf), (grace, rf, max_t)
        for s in (1, 2):
            assert rungs.bracket_milestones(s) == _compat.ray_bracket_milestones(grace, max_t, rf, s), (grace, rf, max_t, s)


def test_epochs_are_where_ray_asha_decides() -> None:
    for grace, rf, max_t in _grid():
        rungs = Rungs(grace, rf, max_t)
        assert rungs.epochs == _ray_decision_epochs(grace, rf, max_t), (grace, rf, max_t)
        assert rungs.epochs == sorted(set(rungs.epochs)) and all(1 <= e <= max_t for e in rungs.epochs)
        assert rungs.stopping_epochs == [e for e in rungs.epochs if e < max_t]
        assert rungs.report_epochs == sorted({*rungs.epochs, max_t})


@pytest.mark.parametrize("rf", [2, 2.5, 3.7])
def test_a_worse_trial_is_stopped_at_the_first_stopping_epoch(rf: float) -> None:
    grace, max_t = 1, 40
    asha = ASHAScheduler(time_attr="epoch", metric="loss", mode="min", max_t=max_t, grace_period=grace,
                         reduction_factor=rf)
    good, bad = SimpleNamespace(trial_id="good"), SimpleNamespace(trial_id="bad")
    for t in (good, bad):
        asha.on_trial_add(None, t)
    for epoch in range(1, max_t):
        assert asha.on_trial_result(None, good, {"epoch": epoch, "loss": 0.0}) == "CONTINUE"
    stops = [e for e in range(1, max_t) if asha.on_trial_result(None, bad, {"epoch": e, "loss": 1.0}) == "STOP"]
    assert stops[0] == Rungs(grace, rf, max_t).stopping_epochs[0]


def test_of_budget() -> None:
    budget = SimpleNamespace(max_epochs=40, grace_period=1, reduction_factor=2.5, num_samples=3)
    assert Rungs.of_budget(budget) == Rungs(1, 2.5, 40)


# --- progress, report and MO-ASHA on those epochs --------------------------------------------

def test_progress_uses_the_one_type_and_its_epochs() -> None:
    assert progress.Rungs is Rungs
    rungs = Rungs(1, 2.5, 40)
    rf = 2.5
    expected = 1 + (3 - 1) / rf + (7 - 3) / rf ** 2 + (16 - 7) / rf ** 3 + (40 - 16) / rf ** 4
    assert expected_remaining_epochs(0, 40, rungs) == pytest.approx(expected)
    assert expected_remaining_epochs(2, 40, rungs) == pytest.approx(1 + 4 / rf + 9 / rf ** 2 + 24 / rf ** 3)
    assert expected_remaining_epochs(16, 40, rungs) == pytest.approx(24)
    assert expected_remaining_epochs(17, 40, rungs) == pytest.approx(23)

    p = ProgressLines(metric="loss", mode="min", num_samples=2, max_epochs=40, rungs=rungs, every_s=1e9,
                      stream=None)
    trial = SimpleNamespace(trial_id="a", status="RUNNING", config={}, last_result=None)
    for epoch in range(1, 41):
        p.on_trial_result(epoch, [trial], trial, {"loss": 1.0, "epoch": epoch})
    assert sorted(p.reached) == [1, 3, 7, 16] and sorted(p.passed) == [1, 3, 7, 16]


def test_report_rungs_are_ray_epochs_and_the_full_budget() -> None:
    assert asha_rungs(40, 1, 2.5) == [1, 3, 7, 16, 40]
    for grace, rf, max_t in _grid()[::7]:
        assert asha_rungs(max_t, grace, rf) == Rungs(grace, rf, max_t).report_epochs
    # build_ablation counts the trials at exactly those epochs
    rows, history = [], []
    for i in range(6):
        rows.append({"trial_id": f"t{i}", "status": STATUS_COMPLETE, "epochs": 40, "shape": "ab"[i % 2],
                     "best_loss": 0.0, "last_loss": 0.0})
        history += [{"trial_id": f"t{i}", "epoch": e, "loss": float(i + 1 / e)} for e in range(1, 41)]
    run = RunTrials(trials=pd.DataFrame(rows), history=pd.DataFrame(history), params=["shape"])
    result = build_ablation(run, metric="loss", mode="min", factors=[], baseline={}, bins={}, max_epochs=40,
                            grace_period=1, reduction_factor=2.5)
    assert sorted(result.rungs) == [1, 3, 7, 16, 40]


def _trial(trial_id: str) -> Trial:
    return Trial("__fake", trial_id=trial_id, stub=True)


@pytest.mark.parametrize("grace,rf,max_t", [(1, 2.5, 40), (2, 2.5, 50), (25, 2.2, 150), (1, 3.7, 60)])
def test_mo_asha_with_one_objective_decides_at_rays_epochs(grace: int, rf: float, max_t: int) -> None:
    """The same stream of results to Ray's ASHA and to MO-ASHA on one objective: the same
    answers, and trials recorded at the rungs at the same epochs, Rungs(...).epochs."""
    common = dict(time_attr="epoch", max_t=max_t, grace_period=grace, reduction_factor=rf)
    schedulers = {"ray": ASHAScheduler(metric="loss", mode="min", **common),
                  "ours": MultiObjectiveASHA(metrics=["loss"], modes=["min"], **common)}

    def recorded_ids(name: str) -> list[set[str]]:
        s = schedulers[name]
        if name == "ray":
            return [set(r) for _, r in _compat.asha_rungs(s)[0]]
        return [set(r["recorded"]) for r in s.get_rungs()[0]]

    seen: dict[str, list] = {"ray": [], "ours": []}
    for name, s in schedulers.items():
        levels = np.random.default_rng(1).normal(size=12)
        for i, level in enumerate(levels):
            trial = _trial(f"t{i}")
            s.on_trial_add(None, trial)
            for epoch in range(1, max_t + 1):
                before = recorded_ids(name)
                result = {"epoch": epoch, "loss": float(level + 1 / epoch)}
                action = s.on_trial_result(None, trial, result)
                if action == "STOP":
                    s.on_trial_complete(None, trial, result)
                after = recorded_ids(name)
                if any(trial.trial_id in a - b for a, b in zip(after, before)):
                    seen[name].append((trial.trial_id, epoch, action))
                if action == "STOP":
                    break
    assert seen["ours"] == seen["ray"]
    # t0, first at every rung, goes on at each: every decision epoch is met, no other
    assert sorted({epoch for _, epoch, _ in seen["ray"]}) == Rungs(grace, rf, max_t).epochs
    assert any(action == "STOP" and epoch < max_t for _, epoch, action in seen["ray"])  # ASHA stopped someone early
