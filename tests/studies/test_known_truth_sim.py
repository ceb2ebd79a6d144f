"""benchmarks/known_truth.py: the exact marginals of the synthetic objectives
agree with a Monte-Carlo over the declared space, null factors are flat, and
the simulated TPE + ASHA study behaves like one (TPE concentrates, ASHA
promotes by value at each rung, as Ray's own bracket does)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from studies.report.ablation import asha_rungs, level_labels, values_at_epoch
from studies.report.trials import STATUS_COMPLETE, STATUS_PRUNED

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import known_truth as kt  # noqa: E402
from analysis_truth import oracle_levels, rung_truth  # noqa: E402

MAX_EPOCHS, GRACE, RF = 18, 2, 3
LOAD_TRIALS_COLUMNS = ["trial_id", "status", "epochs", "best_loss", "last_loss"]
TAIL_COLUMNS = ["optuna_number", "optuna_state", "seed", "error", "trial_dir"]


@pytest.fixture(scope="module")
def studies() -> dict[str, object]:
    obj = kt.ramp_like()
    return {"obj": obj, "tpe": kt.simulate_study(obj, sampler="tpe", seed=0),
            "random": kt.simulate_study(obj, sampler="random", seed=0)}


@pytest.mark.parametrize("name", sorted(kt.OBJECTIVES))
def test_exact_marginals_match_monte_carlo(name: str) -> None:
    obj = kt.OBJECTIVES[name]()
    exact = kt.true_marginals(obj)
    mc = kt.monte_carlo_marginals(obj, 1_000_000, seed=1)
    assert exact.keys() == {f.name for f in obj.factors}
    for factor, levels in exact.items():
        assert list(levels) == kt.levels(obj, factor)
        for level, value in levels.items():
            mean, se = mc[factor][level]
            assert abs(value - mean) < 4.5 * se + 1e-9, (factor, level, value, mean, se)
            assert se < 1e-3  # so the check is tight: within 1/15 of a noise sd, typically 1/100


@pytest.mark.parametrize("name", sorted(kt.OBJECTIVES))
def test_nulls_flat_and_importance_order(name: str) -> None:
    obj = kt.OBJECTIVES[name]()
    variance = kt.main_effect_variance(obj)
    order = kt.true_importance_order(obj)
    assert obj.null_factors and set(order[-len(obj.null_factors):]) == set(obj.null_factors)
    for null in obj.null_factors:
        values = list(kt.factor_marginals(obj, null).values())
        assert max(values) - min(values) < 1e-12 and variance[null] < 1e-20
    dominant = order[0]
    assert dominant == {"ramp_like": "schedule", "many_weak": "lr"}[name]
    # realistic signal-to-noise: the dominant factor spans a few noise sds, weak ones below one
    assert 2.5 * obj.noise_sd < kt.true_spread(obj, dominant) < 6 * obj.noise_sd
    if name == "many_weak":  # after lr and two medium factors: weak (about 5% of lr's spread) or null
        spreads = [kt.true_spread(obj, f) for f in order[3:]]
        assert all(s < 0.1 * kt.true_spread(obj, dominant) for s in spreads) and sum(s > 0.01 for s in spreads) == 5


def test_ramp_like_shape() -> None:
    obj = kt.ramp_like()
    assert kt.best_level(obj, "schedule") == "linear" != obj.baseline["schedule"]
    lr = kt.factor_marginals(obj, "lr")
    best = kt.best_level(obj, "lr")
    assert best not in (kt.levels(obj, "lr")[0], kt.levels(obj, "lr")[-1])  # interior optimum
    assert kt.report_label(obj, "lr", best) == "[0.000562341, 0.00316228)" and lr[best] == min(lr.values())
    # ramp_start only exists for linear and cosine: its marginals average over those two
    assert obj.by_name["ramp_start"].when == {"schedule": ("linear", "cosine")}
    assert 0.3 * obj.noise_sd < kt.true_spread(obj, "ramp_start") < kt.true_spread(obj, "lr")
    # the best arch depends on the schedule (an interaction, not only a main effect)
    best_arch = {s: min(("mlp", "transformer", "gru"), key=lambda a: obj.f({**obj.baseline, "schedule": s, "arch": a}))
                 for s in ("constant", "linear", "cosine")}
    assert len(set(best_arch.values())) == 3
    # the numeric bins are what the report prints when given these edges
    labels = level_labels(kt.sample_space(obj.factors, 400, np.random.default_rng(0))["lr"], obj.by_name["lr"], obj.bins["lr"])
    assert set(labels) == {kt.report_label(obj, "lr", lv) for lv in kt.levels(obj, "lr")}


def test_study_tables_like_load_trials(studies: dict) -> None:
    obj, run = studies["obj"], studies["tpe"]
    t = run.trials
    assert list(t.columns) == LOAD_TRIALS_COLUMNS + run.params + TAIL_COLUMNS
    assert run.params == [f.name for f in obj.factors] and len(t) == 180
    assert list(run.history.columns) == ["trial_id", "loss", "epoch"]
    assert set(t["status"]) == {STATUS_COMPLETE, STATUS_PRUNED}
    assert ((t["status"] == STATUS_COMPLETE) == (t["epochs"] == MAX_EPOCHS)).all()
    assert ((t["status"] == STATUS_PRUNED) == (t["optuna_state"] == "PRUNED")).all()
    assert t["optuna_number"].tolist() == list(range(180))
    # inactive conditional factors were not sampled
    on = t["schedule"].isin(["linear", "cosine"])
    assert t.loc[on, "ramp_start"].notna().all() and t.loc[~on, "ramp_start"].isna().all()
    # trial 0 is the baseline, active factors only
    first = t.iloc[0]
    assert {p: first[p] for p in run.params if first[p] == first[p]} == kt.active_config(obj, obj.baseline)
    # epochs recorded agree with the history
    per_trial = run.history.groupby("trial_id")["epoch"].max()
    assert (per_trial.reindex(t["trial_id"]).to_numpy() == t["epochs"].to_numpy()).all()


def test_tpe_concentrates_random_does_not(studies: dict) -> None:
    best = kt.best_level(studies["obj"], "schedule")
    tpe = (studies["tpe"].trials["schedule"] == best).mean()
    rnd = (studies["random"].trials["schedule"] == best).mean()
    assert tpe > 0.6
    assert abs(rnd - 0.25) < 0.08


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_asha_promotes_by_value(studies: dict, sampler: str) -> None:
    run = studies[sampler]
    epochs = run.trials.set_index("trial_id")["epochs"]
    rungs = asha_rungs(MAX_EPOCHS, GRACE, RF)
    assert rungs == [2, 6, 18]
    reached = [int((epochs >= r).sum()) for r in rungs]
    assert reached[0] == 180 and reached[0] > reached[1] > reached[2] > 0
    for r in rungs[:-1]:
        at = values_at_epoch(run, "loss", r)
        went_on = epochs.reindex(at.index) > r
        assert at[went_on].mean() < at[~went_on].mean()
    assert ((epochs.isin(rungs)) | (epochs == MAX_EPOCHS)).all()  # stops happen at rungs only
    if sampler == "random":  # a stationary stream: roughly 1/rf of the trials at a rung go on
        for a, b in zip(reached, reached[1:]):
            assert 1.6 < a / b < 4.5, reached


def test_bracket_matches_ray() -> None:
    bracket_mod = pytest.importorskip("ray.tune.schedulers.async_hyperband")

    class _Trial:
        def __init__(self, trial_id: str):
            self.trial_id = trial_id

    rng = np.random.default_rng(3)
    ours, ray = kt.AshaBracket(GRACE, MAX_EPOCHS, RF), bracket_mod._Bracket(GRACE, MAX_EPOCHS, RF, 0)
    for i in range(120):
        level = rng.normal()
        for epoch in range(1, MAX_EPOCHS):
            reward = level + 0.3 * rng.normal()
            go_on = ours.on_result(str(i), epoch, reward)
            assert go_on == (ray.on_result(_Trial(str(i)), epoch, reward) == "CONTINUE")
            if not go_on:
                break
    assert not ours.on_result("x", MAX_EPOCHS, 0.0)


def test_designed_runs_share_noise_per_seed() -> None:
    obj = kt.ramp_like()
    best = {**obj.baseline, "schedule": "linear", "arch": "transformer", "lr": 10 ** -2.7, "ramp_start": 0.2}
    seeds = list(range(40))
    runs = kt.simulate_designed(obj, [{**obj.baseline, "label": "baseline"}, {**best, "label": "best"}], seeds)
    assert list(runs.columns) == ["config", "seed", "loss", "epochs"] and len(runs) == 80
    again = kt.simulate_designed(obj, [best, obj.baseline], seeds, labels=["best", "baseline"])
    wide = runs.pivot(index="seed", columns="config", values="loss")
    assert np.allclose(wide.to_numpy(), again.pivot(index="seed", columns="config", values="loss").to_numpy())
    assert wide["best"].corr(wide["baseline"]) > 0.4  # paired: the seed's shared part (70% of the variance)
    diff = wide["best"] - wide["baseline"]
    assert abs(diff.mean() - (obj.f(best) - obj.f(obj.baseline))) < 3 * diff.std() / np.sqrt(len(seeds))


def test_oracle_bin_means_are_the_truth_without_noise() -> None:
    """benchmarks/analysis_truth.py's reference row: with every other factor's
    effect removed exactly and no noise, a choice's trials all carry that
    choice's marginal, whichever configs TPE gave them; a numeric bin's mean
    differs from the truth only by where in the bin its trials sit."""
    obj = kt.many_weak()
    obj.noise_sd = 0.0
    run = kt.simulate_study(obj, sampler="tpe", seed=0, n_trials=60)
    truth = rung_truth(obj, "optimizer", 2, n=20_000)
    assert np.allclose(oracle_levels(obj, run, "optimizer", 2), truth, atol=0.01)
    # lr: TPE's trials are not uniform inside a bin, but the order of four bins this far apart survives that
    est = oracle_levels(obj, run, "lr", 2)
    assert list(np.argsort(est)) == list(np.argsort(rung_truth(obj, "lr", 2, n=20_000)))
