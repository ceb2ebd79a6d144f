"""studies/tune/mo_asha.py: Ray's ASHA decision for decision with one objective,
the MO-ASHA rule by hand with two, rung state across a resume, and one small
real Tune run."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler

from studies.spec.pareto import pareto_front_mask, pareto_order
from studies.tune.mo_asha import MultiObjectiveASHA, promotes

REPO = Path(__file__).resolve().parents[3]


def _trial(trial_id: str) -> Trial:
    """A real Tune Trial that runs nothing (what Ray's own scheduler tests use)."""
    return Trial("__fake", trial_id=trial_id, stub=True)


def _drive(scheduler, *, seed: int, n_trials: int, max_t: int, metrics: list[str], modes: list[str],
           ties: bool) -> list[tuple]:
    """Trials joining and reporting in a random interleaving (at most 4 live at once),
    as Tune would call the scheduler: on_trial_add, on_trial_result per result, and
    on_trial_complete with the last result once a trial is stopped or done. Some results
    skip an epoch, lack the metrics, or carry a NaN. The stream depends only on the seed
    and the scheduler's decisions, so two schedulers deciding alike see the same stream.
    Returns every call and its answer."""
    rng = np.random.default_rng(seed)
    np.random.seed(seed)  # ASHA picks a bracket per trial from numpy's global generator
    log: list[tuple] = []
    waiting = [_trial(f"t{i}") for i in range(n_trials)]
    live: dict[str, dict] = {}
    while waiting or live:
        if waiting and (len(live) < 4 and (not live or rng.random() < 0.4)):
            trial = waiting.pop(0)
            scheduler.on_trial_add(None, trial)
            live[trial.trial_id] = {"trial": trial, "t": 0, "level": rng.normal(size=len(metrics)), "last": None}
            log.append(("add", trial.trial_id))
            continue
        state = live[rng.choice(sorted(live))]
        trial = state["trial"]
        state["t"] += 2 if rng.random() < 0.15 else 1
        values = state["level"] + 0.3 * rng.normal(size=len(metrics)) + 1.0 / state["t"]
        if ties:
            values = np.round(values, 1)
        result = {"epoch": state["t"], **{name: float(v) for name, v in zip(metrics, values)}}
        draw = rng.random()
        if draw < 0.05:
            result = {"epoch": state["t"]}  # no metric in this result
        elif draw < 0.08:
            result[metrics[rng.integers(len(metrics))]] = float("nan")
        action = scheduler.on_trial_result(None, trial, result)
        log.append(("result", trial.trial_id, repr(sorted(result.items())), action))  # repr: NaN == NaN
        state["last"] = result
        ends = state["t"] >= max_t or rng.random() < 0.03  # done (or failed) on its own
        if action == "STOP" or ends:
            scheduler.on_trial_complete(None, trial, result)
            log.append(("complete", trial.trial_id))
            del live[trial.trial_id]
    return log


SINGLE_CASES = [
    # (max_t, grace_period, reduction_factor, brackets, stop_last_trials)
    (9, 1, 3, 1, True),
    (27, 1, 3, 1, True),
    (16, 2, 2, 1, True),
    (20, 1, 4, 1, False),
    (27, 1, 3, 2, True),
    (30, 3, 2.5, 2, False),
]


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")  # Ray's ASHA, at an all-NaN rung
@pytest.mark.parametrize("case", SINGLE_CASES, ids=lambda c: "max_t={}-grace={}-rf={}-brackets={}-stop_last={}".format(*c))
@pytest.mark.parametrize("mode", ["min", "max"])
def test_one_objective_decides_exactly_as_ray_asha(case: tuple, mode: str) -> None:
    max_t, grace, rf, brackets, stop_last = case
    for seed in range(4):
        common = dict(time_attr="epoch", max_t=max_t, grace_period=grace, reduction_factor=rf, brackets=brackets,
                      stop_last_trials=stop_last)
        ray_asha = ASHAScheduler(metric="loss", mode=mode, **common)
        ours = MultiObjectiveASHA(metrics=["loss"], modes=[mode], **common)
        kwargs = dict(seed=seed, n_trials=40, max_t=max_t, metrics=["loss"], modes=[mode], ties=seed % 2 == 1)
        expected = _drive(ray_asha, **kwargs)
        got = _drive(ours, **kwargs)
        assert got == expected
        stops = sum(1 for entry in expected if entry[0] == "result" and entry[3] == "STOP")
        assert stops > 5  # the stream exercises stopping, not only continuing
        # the rungs hold the same trials and values (Ray keeps them sign-adjusted)
        op = 1.0 if mode == "max" else -1.0
        for theirs, mine in zip(ray_asha._brackets, ours.get_rungs()):
            assert [m for m, _ in theirs._rungs] == [r["milestone"] for r in mine]
            for (_, recorded), rung in zip(theirs._rungs, mine):
                assert list(recorded) == list(rung["recorded"])
                np.testing.assert_array_equal([op * v[0] for v in rung["recorded"].values()], list(recorded.values()))


@pytest.mark.parametrize("max_t,grace,rf,brackets", [(9, 1, 3, 1), (27, 1, 3, 3), (100, 1, 4, 2), (1000, 1, 10, 1),
                                                     (81, 3, 3, 2), (10, 1, 2, 1), (64, 2, 2, 4)])
def test_rungs_are_ashas_milestones(max_t: int, grace: int, rf: float, brackets: int) -> None:
    ray_asha = ASHAScheduler(time_attr="epoch", metric="a", mode="min", max_t=max_t, grace_period=grace,
                             reduction_factor=rf, brackets=brackets)
    ours = MultiObjectiveASHA(metrics=["a", "b"], modes=["min", "max"], max_t=max_t, grace_period=grace,
                              reduction_factor=rf, brackets=brackets)
    assert [[r["milestone"] for r in b] for b in ours.get_rungs()] == [[m for m, _ in b._rungs] for b in ray_asha._brackets]


# --- two objectives by hand -------------------------------------------------------------------------

def _mo(**kwargs) -> MultiObjectiveASHA:
    base = dict(metrics=["loss", "acc"], modes=["min", "max"], max_t=9, grace_period=1, reduction_factor=3)
    return MultiObjectiveASHA(**{**base, **kwargs})


def _report(scheduler: MultiObjectiveASHA, trial_id: str, epoch: int, **metrics: float) -> str:
    trial = _trial(trial_id)
    if trial_id not in scheduler._trial_info:
        scheduler.on_trial_add(None, trial)
    return scheduler.on_trial_result(None, trial, {"epoch": epoch, **metrics})


def test_a_dominated_trial_stops_and_a_front_member_goes_on() -> None:
    s = _mo()
    assert _report(s, "a", 1, loss=0.5, acc=0.80) == "CONTINUE"  # first at the rung
    assert _report(s, "b", 1, loss=0.6, acc=0.70) == "STOP"      # a is better in both; top ceil(2/3) = 1
    assert _report(s, "c", 1, loss=0.7, acc=0.60) == "STOP"      # worse than a and b
    # d: better loss than a, worse accuracy: fronts {a, d}, {b}, {c}; top ceil(4/3) = 2 is the front
    assert _report(s, "d", 1, loss=0.4, acc=0.75) == "CONTINUE"
    # e dominates c but not b: third front of five; top 2
    assert _report(s, "e", 1, loss=0.65, acc=0.65) == "STOP"
    # f beats a in both and trades off against d: fronts {d, f}, ... -> continues. With accuracy
    # minimised by mistake, d would dominate f (and b, c, e would share the first front): STOP.
    assert _report(s, "f", 1, loss=0.45, acc=0.90) == "CONTINUE"
    wrong = _mo(modes=["min", "min"])
    for tid, loss, acc in [("a", 0.5, 0.8), ("b", 0.6, 0.7), ("c", 0.7, 0.6), ("d", 0.4, 0.75), ("e", 0.65, 0.65)]:
        _report(wrong, tid, 1, loss=loss, acc=acc)
    assert _report(wrong, "f", 1, loss=0.45, acc=0.90) == "STOP"
    # the next rung (3) starts empty: d is its first trial and goes on, whatever it reports
    assert _report(s, "d", 3, loss=9.0, acc=0.0) == "CONTINUE"
    assert _report(s, "f", 3, loss=0.3, acc=0.95) == "CONTINUE"  # dominates d: first of two, top ceil(2/3) = 1
    assert _report(s, "a", 3, loss=0.45, acc=0.85) == "STOP"  # f is better in both: second front of three


def test_the_crowding_distance_breaks_ties_within_the_front() -> None:
    # Six trials on one front (loss + (1 - acc) = 1 in tenths: none better in both), crowded at
    # the low-loss end, with a gap between loss 0.3 and 0.9. A seventh trial on the same front:
    # top ceil(7/3) = 3 go on. The two extremes have infinite distance; the third place goes to the
    # most isolated point.
    front = [(0.0, 0.0), (1.0, 1.0), (0.1, 0.1), (0.2, 0.2), (0.3, 0.3), (0.9, 0.9)]

    def rung_of_six() -> MultiObjectiveASHA:
        s = _mo()
        for i, (loss, acc) in enumerate(front):
            _report(s, f"r{i}", 1, loss=loss, acc=acc)
        return s

    # In the gap: distance (0.9 - 0.3)/1 + (0.9 - 0.3)/1 = 1.2, the others at most 0.8
    assert _report(rung_of_six(), "gap", 1, loss=0.6, acc=0.6) == "CONTINUE"
    # In the crowded end: (0.2 - 0.1) + (0.2 - 0.1) = 0.2, the least isolated; on the front all the same
    assert _report(rung_of_six(), "crowded", 1, loss=0.15, acc=0.15) == "STOP"


@pytest.mark.parametrize("seed,rf", [(7, 2), (0, 2), (4, 3)])
def test_promotion_is_the_top_ceil_n_over_rf_of_the_pareto_order_or_an_end_of_the_front(seed: int, rf: int) -> None:
    rng = np.random.default_rng(seed)
    s = _mo(reduction_factor=rf, max_t=8)
    seen: list[tuple[float, float]] = []
    ends_beyond_places = 0
    for i in range(40):
        loss, acc = np.round(rng.random(2), 1)
        action = _report(s, f"t{i}", 1, loss=float(loss), acc=float(acc))
        pool = np.array([*seen, (loss, acc)])
        position = int(np.flatnonzero(pareto_order(pool, ["min", "max"]) == len(pool) - 1)[0])
        # an end: non-dominated and the least loss or the most accuracy at the rung (both vary here)
        end = bool(pareto_front_mask(pool, ["min", "max"])[-1]) and (loss == pool[:, 0].min() or acc == pool[:, 1].max())
        in_places = position < math.ceil(len(pool) / rf)
        ends_beyond_places += end and not in_places
        assert action == ("CONTINUE" if in_places or end else "STOP")
        assert promotes(pool, ["min", "max"], rf) == (action == "CONTINUE")
        seen.append((float(loss), float(acc)))
    assert pareto_front_mask(np.array(seen), ["min", "max"]).sum() >= 1
    assert ends_beyond_places == {7: 0, 0: 1, 4: 3}[seed]  # seeds 0 and 4 meet an end beyond the places


def test_an_end_of_the_front_is_never_stopped_by_a_tie_rule() -> None:
    # Two objectives, a rung of three, one place (ceil(3/3)): a and the baseline trade off, both ends of the
    # front with infinite crowding distance; the old tie rule (recording order) gave the place to a and stopped
    # the baseline, although it has the least loss at the rung.
    s = _mo()
    assert _report(s, "a", 1, loss=0.5, acc=0.90) == "CONTINUE"
    assert _report(s, "b", 1, loss=0.6, acc=0.50) == "STOP"
    assert _report(s, "baseline", 1, loss=0.4, acc=0.80) == "CONTINUE"
    # Three objectives (loss min, acc max, time min): the baseline has the least loss, ties r3 on accuracy
    # (and so dominates r3) and sits in the middle of time. Six at the rung, two places; r0, r1, r2 and r4 are
    # ends too (most time, most accuracy, least time, ...), so by crowding the five ends share infinite distance
    # and the baseline, recorded last, is fourth. It is the front's end in loss: it goes on.
    three = _mo(metrics=["loss", "acc", "time"], modes=["min", "max", "min"])
    rung = [(0.5, 0.9, 3.0), (0.6, 0.95, 2.0), (0.7, 0.8, 1.0), (0.55, 0.85, 2.5), (0.65, 0.9, 1.5)]
    for i, (loss, acc, time) in enumerate(rung):
        _report(three, f"r{i}", 1, loss=loss, acc=acc, time=time)
    pool = np.array([*rung, (0.4, 0.85, 2.0)])
    assert int(np.flatnonzero(pareto_order(pool, ["min", "max", "min"]) == 5)[0]) == 3   # beyond ceil(6/3) = 2
    assert _report(three, "baseline", 1, loss=0.4, acc=0.85, time=2.0) == "CONTINUE"
    # a newcomer crowded on the front but best in nothing still loses the tie: (0.52, 0.87, 2.2) trades off
    # with everyone and holds no objective's best value
    assert _report(three, "middle", 1, loss=0.52, acc=0.87, time=2.2) == "STOP"


def test_an_objective_constant_up_to_rounding_makes_no_end() -> None:
    # The crowding test's front with a third objective that is 2.0 up to 1e-13: the crowded newcomer's time is
    # the least by 1e-13 only, which is no end of the front (and adds no crowding distance): it stops.
    front = [(0.0, 0.0), (1.0, 1.0), (0.1, 0.1), (0.2, 0.2), (0.3, 0.3), (0.9, 0.9)]
    s = _mo(metrics=["loss", "acc", "time"], modes=["min", "max", "min"])
    for i, (loss, acc) in enumerate(front):
        _report(s, f"r{i}", 1, loss=loss, acc=acc, time=2.0 + 1e-13 * (i % 3))
    assert _report(s, "crowded", 1, loss=0.15, acc=0.15, time=2.0 - 1e-13) == "STOP"


def test_missing_metrics_none_and_nan() -> None:
    s = _mo()
    assert _report(s, "a", 1, loss=0.5, acc=0.8) == "CONTINUE"
    # without one objective (or without the time attribute) nothing is decided or recorded
    assert _report(s, "b", 1, loss=0.1) == "CONTINUE"
    assert s.on_trial_result(None, _trial("b"), {"loss": 0.1, "acc": 0.1}) == "CONTINUE"
    assert _report(s, "b", 1, loss=None, acc=0.9) == "CONTINUE"
    assert list(s.get_rungs()[0][-1]["recorded"]) == ["a"]
    # a NaN vector ranks last: stopped, and recorded
    assert _report(s, "n", 1, loss=float("nan"), acc=0.99) == "STOP"
    assert list(s.get_rungs()[0][-1]["recorded"]) == ["a", "n"]
    # ... but the first trial at a rung goes on whatever it reports
    assert _report(s, "n", 3, loss=float("nan"), acc=float("nan")) == "CONTINUE"
    # the trial completes without the metrics: no crash, nothing recorded
    s.on_trial_complete(None, _trial("b"), {"epoch": 2})
    # max_t: stopped (stop_last_trials), as ASHA
    assert _report(s, "a", 9, loss=0.1, acc=0.9) == "STOP"
    assert "num_stopped=2" in s.debug_string() and "loss (min), acc (max)" in s.debug_string()


def test_set_search_properties_accepts_what_agrees_with_the_objectives() -> None:
    s = _mo()
    assert s.set_search_properties(None, None)
    assert s.set_search_properties("loss", "min") and s.set_search_properties("acc", "max")
    assert s.set_search_properties(["acc", "loss"], ["max", "min"]) and s.set_search_properties("acc", None)
    assert not s.set_search_properties("acc", "min")
    assert not s.set_search_properties("val_loss", "min")
    assert not s.set_search_properties(None, "min")  # a mode alone would be every objective's
    assert not s.set_search_properties(["loss", "acc"], ["min"])
    assert s.metrics == ["loss", "acc"] and s.modes == ["min", "max"]
    # Tune reads scheduler.metric to check each result holds it, by a dict lookup: a string or nothing
    assert s.metric is None
    one = MultiObjectiveASHA(metrics="loss", modes="min", max_t=9)
    assert one.metric == "loss" and one.set_search_properties("loss", "min") and one.set_search_properties(None, "min")
    assert not one.set_search_properties("loss", "max")
    with pytest.raises(ValueError):
        MultiObjectiveASHA(metrics=["a", "b"], modes=["min"], max_t=9)
    with pytest.raises(ValueError):
        MultiObjectiveASHA(metrics=["a", "a"], modes=["min", "min"], max_t=9)


# --- rung state across a resume ---------------------------------------------------------------------

def test_rungs_round_trip_and_a_restored_scheduler_decides_the_same() -> None:
    rng = np.random.default_rng(21)
    kwargs = dict(metrics=["loss", "acc"], modes=["min", "max"], max_t=27, grace_period=1, reduction_factor=3)
    first = MultiObjectiveASHA(**kwargs)
    unrestored = MultiObjectiveASHA(**kwargs)
    for i in range(30):  # half a study: thirty trials to epoch 3 or their stop
        for epoch in (1, 2, 3):
            if _report(first, f"t{i}", epoch, loss=float(rng.random()), acc=float(rng.random())) == "STOP":
                break
    state = pickle.loads(pickle.dumps(first.get_rungs()))
    assert all(isinstance(v, float) for b in state for r in b for vec in r["recorded"].values() for v in vec)
    restored = MultiObjectiveASHA(**kwargs)
    restored.set_rungs(state)
    assert restored.get_rungs() == first.get_rungs()
    differs = 0
    for i in range(30, 60):  # the rest: the restored scheduler decides as the uninterrupted one
        for epoch in (1, 2, 3, 4):
            loss, acc = float(rng.random()), float(rng.random())
            a = _report(first, f"t{i}", epoch, loss=loss, acc=acc)
            assert _report(restored, f"t{i}", epoch, loss=loss, acc=acc) == a
            differs += _report(unrestored, f"t{i}", epoch, loss=loss, acc=acc) != a
            if a == "STOP":
                break
    assert differs > 0  # without the rungs, the decisions would not all be the same
    # the whole scheduler pickles too (Tune keeps it in tuner.pkl)
    assert pickle.loads(pickle.dumps(first)).get_rungs() == first.get_rungs()
    with pytest.raises(ValueError):
        MultiObjectiveASHA(**{**kwargs, "max_t": 81}).set_rungs(state)
    with pytest.raises(ValueError):
        MultiObjectiveASHA(**{**kwargs, "metrics": ["loss"], "modes": ["min"]}).set_rungs(state)


# --- a real Tune run ---------------------------------------------------------------------------------
