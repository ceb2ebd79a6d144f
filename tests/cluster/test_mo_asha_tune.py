"""studies/tune/mo_asha.py in one small real Tune run (the session's Ray): Tune drives
the scheduler, and every decision it made is replayed by the rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studies.spec.pareto import pareto_front_mask
from studies.tune.mo_asha import MultiObjectiveASHA, promotes


def test_a_small_tune_run(ray_four_fake_gpus, tmp_path: Path) -> None:
    from ray import tune

    def curves(i: int, epoch: int) -> dict[str, float]:
        """Trials 6 and 7 are each better than 0-5 in both objectives and trade off with
        each other; 0-5 get worse with i. Everything improves with the epoch."""
        loss = {6: 0.1, 7: 0.5}.get(i, 0.6 + 0.1 * i) / epoch
        acc = 1.0 - {6: 0.5, 7: 0.1}.get(i, 0.6 + 0.05 * i) / epoch
        return {"loss": loss, "acc": acc}

    def train(config: dict) -> None:
        import time

        from ray import tune as t

        for epoch in range(1, 10):
            time.sleep(0.02)
            t.report({"epoch": epoch, **curves(config["i"], epoch)})

    scheduler = MultiObjectiveASHA(metrics=["loss", "acc"], modes=["min", "max"], max_t=9, grace_period=1,
                                   reduction_factor=3)
    tuner = tune.Tuner(
        train,
        # a grid, so that the trials start in this order (the two best last, each meeting a full rung)
        param_space={"i": tune.grid_search(list(range(8)))},
        # the scheduler holds its own objectives: Tune's metric/mode stay unset (a list there breaks Tune)
        tune_config=tune.TuneConfig(metric=None, mode=None, scheduler=scheduler, num_samples=1),
        run_config=tune.RunConfig(name="mo_asha", storage_path=str(tmp_path), verbose=0),
    )
    grid = tuner.fit()
    assert not grid.errors
    last_epoch = {r.config["i"]: r.metrics["epoch"] for r in grid}
    assert sorted(last_epoch) == list(range(8))
    assert any(e < 9 for e in last_epoch.values())  # some trials were stopped early
    first_rung = np.array([[curves(i, 1)["loss"], curves(i, 1)["acc"]] for i in range(8)])
    front = np.flatnonzero(pareto_front_mask(first_rung, ["min", "max"]))
    assert front.tolist() == [6, 7]
    assert all(last_epoch[i] > 1 for i in front)  # the non-dominated ones went on past the first rung
    # Tune drove this very scheduler: replay each rung in the order trials reached it, by the rule
    by_id = {r.metrics["trial_id"]: r.config["i"] for r in grid}
    rungs = scheduler.get_rungs()[0]
    assert len(rungs[-1]["recorded"]) == 8
    for rung in rungs[1:]:  # the top rung (max_t) is recorded as trials end, and decides nothing
        pool: list[list[float]] = []
        for trial_id, vector in rung["recorded"].items():
            pool.append(vector)
            went_on = last_epoch[by_id[trial_id]] > rung["milestone"]
            assert went_on == promotes(np.array(pool), ["min", "max"], 3), (rung["milestone"], trial_id)
