"""ASHA's rungs travel in Tune's callback state and come back into the
scheduler Tune restores with them (studies/tune/asha_state.py)."""

from __future__ import annotations

import ray.cloudpickle as pickle
from ray.tune.schedulers import ASHAScheduler

from studies.tune.asha_state import AshaRungs


def _trial(trial_id: str) -> object:
    return type("T", (), {"trial_id": trial_id})()


def test_rungs_survive_the_pickle_tune_restores_from() -> None:
    scheduler = ASHAScheduler(time_attr="epoch", metric="loss", mode="min", max_t=4, grace_period=1, reduction_factor=2)
    callback = AshaRungs(scheduler)
    # tuner.pkl: the scheduler and the callbacks in one pickle, made when the run starts (empty rungs)
    restored_scheduler, restored_callback = pickle.loads(pickle.dumps((scheduler, callback)))
    for i, loss in enumerate([1.0, 2.0]):
        t = _trial(f"t{i}")
        scheduler.on_trial_add(None, t)
        scheduler.on_trial_result(None, t, {"epoch": 1, "loss": loss})
    state = pickle.loads(pickle.dumps(callback.get_state()))   # a snapshot's callback-states file
    restored_callback.set_state(state)
    late = _trial("t2")
    restored_scheduler.on_trial_add(None, late)
    assert restored_scheduler.on_trial_result(None, late, {"epoch": 1, "loss": 1.9}) == "STOP"
    ahead = _trial("t3")
    restored_scheduler.on_trial_add(None, ahead)
    assert restored_scheduler.on_trial_result(None, ahead, {"epoch": 1, "loss": 1.2}) == "CONTINUE"


def test_multi_objective_rungs_survive_it_too() -> None:
    from ray.tune.experiment import Trial

    from studies.tune.mo_asha import MultiObjectiveASHA

    scheduler = MultiObjectiveASHA(time_attr="epoch", metrics=["loss", "speed"], modes=["min", "max"], max_t=4,
                                   grace_period=1, reduction_factor=2)
    callback = AshaRungs(scheduler)
    restored_scheduler, restored_callback = pickle.loads(pickle.dumps((scheduler, callback)))
    for i, (loss, speed) in enumerate([(1.0, 2.0), (2.0, 1.0)]):   # two front members
        t = Trial("__fake", trial_id=f"t{i}", stub=True)
        scheduler.on_trial_add(None, t)
        scheduler.on_trial_result(None, t, {"epoch": 1, "loss": loss, "speed": speed})
    state = pickle.loads(pickle.dumps(callback.get_state()))
    assert "mo_asha_rungs" in state
    restored_callback.set_state(state)
    dominated = Trial("__fake", trial_id="t2", stub=True)
    restored_scheduler.on_trial_add(None, dominated)
    # dominated by t0: third of 3 in the Pareto order, outside the top ceil(3/2) = 2
    assert restored_scheduler.on_trial_result(None, dominated, {"epoch": 1, "loss": 1.5, "speed": 0.5}) == "STOP"
    fresh = MultiObjectiveASHA(time_attr="epoch", metrics=["loss", "speed"], modes=["min", "max"], max_t=4,
                               grace_period=1, reduction_factor=2)
    t = Trial("__fake", trial_id="t2", stub=True)
    fresh.on_trial_add(None, t)
    assert fresh.on_trial_result(None, t, {"epoch": 1, "loss": 1.5, "speed": 0.5}) == "CONTINUE"   # empty rungs
