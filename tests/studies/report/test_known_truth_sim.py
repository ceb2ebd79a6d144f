"""benchmarks/known_truth.py: the exact marginals of the synthetic objectives
agree with a Monte-Carlo over the declared space, null factors are flat, and
the simulated TPE + ASHA study behaves like one (TPE concentrates, ASHA
promotes by value at each rung, as Ray's own bracket does)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studies.report.ablation import asha_rungs, level_labels, values_at_epoch
from studies.runs.trials import STATUS_COMPLETE, STATUS_PRUNED

REPO = Path(__file__).resolve().parents[3]
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


# ---------------------------------------------------------------- the held-out structures (HARD_OBJECTIVES)


def test_hard_objectives_kept_apart() -> None:
    """OBJECTIVES is what analysis_truth and the tests above iterate: unchanged."""
    assert sorted(kt.OBJECTIVES) == ["many_weak", "ramp_like"]
    assert sorted(kt.HARD_OBJECTIVES) == ["crippled", "flip_like"]


@pytest.mark.parametrize("name", sorted(kt.HARD_OBJECTIVES))
def test_hard_exact_marginals_match_monte_carlo(name: str) -> None:
    obj = kt.HARD_OBJECTIVES[name]()
    exact = kt.true_marginals(obj)
    mc = kt.monte_carlo_marginals(obj, 200_000, seed=2)
    for factor, levels in exact.items():
        for level, value in levels.items():
            mean, se = mc[factor][level]
            assert abs(value - mean) < 4.5 * se + 1e-9, (factor, level, value, mean, se)


def test_flip_like_global_and_conditional_truths() -> None:
    obj = kt.flip_like()
    glob = kt.factor_marginals(obj, "width")
    small = kt.conditional_marginals(obj, "width", "lr", (1e-4, 1e-3))
    large = kt.conditional_marginals(obj, "width", "lr", (5e-3, 1e-1))
    assert max(glob, key=glob.get) == "512" and min(glob, key=glob.get) == "64"      # 512 worst over the space
    assert min(small, key=small.get) == "512" and max(small, key=small.get) == "64"  # ... best at small lr
    assert max(large, key=large.get) == "512"
    assert glob["512"] - glob["64"] == pytest.approx(0.15)
    # the flip holds at every point, not only on average
    for lr, best in ((1e-4, True), (1e-3, True), (5e-3, False), (1e-1, False)):
        f = {w: obj.f({**obj.baseline, "lr": lr, "width": w}) for w in (64, 128, 256, 512)}
        assert (min(f, key=f.get) == 512) == best and (max(f, key=f.get) == 512) == (not best)
    # the best configs have 512 (small lr): the searcher's region and the global answer disagree
    lrs = np.logspace(-4, -1, 301)
    best = min(((lr, w) for lr in lrs for w in (64, 128, 256, 512)),
               key=lambda c: obj.f({**obj.baseline, "lr": c[0], "width": c[1]}))
    assert best[1] == 512 and best[0] < 1e-3
    assert kt.true_importance_order(obj) == ["lr", "width", "dropout", "activation"]
    assert kt.true_spread(obj, "activation") < 1e-12


def test_conditional_marginals_average_to_the_global_ones() -> None:
    obj = kt.flip_like()
    glob = kt.factor_marginals(obj, "width")
    per_bin = [kt.conditional_marginals(obj, "width", "lr", lv) for lv in kt.levels(obj, "lr")]
    for w in glob:  # lr's four bins are equally likely (log-uniform, equal width on the log scale)
        assert np.mean([m[w] for m in per_bin]) == pytest.approx(glob[w], abs=1e-12)
    # conditioning on a null factor changes nothing; a given level may be spelt as the choice itself
    assert kt.conditional_marginals(obj, "width", "activation", "gelu") == pytest.approx(glob, abs=1e-12)
    c = kt.crippled()
    assert (kt.conditional_marginals(c, "edge_3_1", "edge_1_0", "conv3x3")
            == pytest.approx(kt.conditional_marginals(c, "edge_3_1", "edge_1_0", "conv3x3"), abs=0))


@pytest.mark.parametrize("name, factor, given, level", [
    ("flip_like", "width", "lr", (1e-4, 1e-3)),
    ("flip_like", "lr", "width", "512"),
    ("crippled", "edge_3_1", "edge_1_0", "conv3x3"),
    ("ramp_like", "ramp_start", "schedule", "cosine"),   # a conditional factor within its parent's level
    ("ramp_like", "arch", "schedule", "linear"),
])
def test_conditional_marginals_match_monte_carlo(name: str, factor: str, given: str, level) -> None:
    obj = {**kt.OBJECTIVES, **kt.HARD_OBJECTIVES}[name]()
    exact = kt.conditional_marginals(obj, factor, given, level)
    frame = kt.sample_space(obj.factors, 150_000, np.random.default_rng(5))
    col = frame[given]
    if isinstance(level, tuple):
        keep = col.notna() & (col.astype(float) >= level[0]) & (col.astype(float) < level[1])
    else:
        keep = col.map(kt.level_name) == kt.level_name(level)
    frame = frame[keep & frame[factor].notna()].reset_index(drop=True)
    y = obj.evaluate(frame)
    f = obj.by_name[factor]
    if f.type == "categorical":
        codes = kt._codes(frame[factor].to_numpy(), f.choices)
    else:
        codes = np.clip(np.searchsorted(obj.bins[factor], frame[factor].to_numpy(float), side="right") - 1, 0, kt.N_BINS - 1)
    for i, (lv, value) in enumerate(exact.items()):
        sel = y[codes == i]
        se = sel.std(ddof=1) / np.sqrt(len(sel))
        assert abs(value - sel.mean()) < 4.5 * se + 1e-9, (lv, value, sel.mean(), se)


def test_crippled_truths() -> None:
    obj = kt.crippled()
    assert len(obj.factors) == 6 and all(f.type == "categorical" and len(f.choices) == 5 for f in obj.factors)
    assert obj.noise_sd == 0.2 and not obj.null_factors
    order = kt.true_importance_order(obj)
    assert order[:3] == ["edge_1_0", "edge_3_2", "edge_3_0"]
    variance = kt.main_effect_variance(obj)
    assert variance["edge_1_0"] > 1.1 * variance["edge_3_2"]          # first by a margin, not a tie
    assert 8.5 < kt.true_spread(obj, "edge_1_0") < 9.5         # the largest main effect, ~9 points
    assert all(kt.true_spread(obj, f) <= kt.true_spread(obj, "edge_1_0") for f in order)
    # cutting edge_1_0 kills node 1: the edges out of it then do nothing
    for dead in ("edge_2_1", "edge_3_1"):
        m = kt.conditional_marginals(obj, dead, "edge_1_0", "none")
        assert max(m.values()) - min(m.values()) < 1e-12
        m = kt.conditional_marginals(obj, dead, "edge_1_0", "conv3x3")
        assert max(m.values()) - min(m.values()) > 0.5
    # where the searcher settles (convs on the chain) edge_1_0's choice among convs matters little
    grid = pd.DataFrame(list(itertools.product(kt.CELL_OPS, repeat=6)), columns=list(kt.CELL_EDGES))
    y = obj.evaluate({e: grid[e].to_numpy(object) for e in kt.CELL_EDGES})
    best = grid.iloc[int(np.argmin(y))].to_dict()
    assert y.min() == obj.f(best) < 8.1 and 9.5 < np.median(y) < 10
    assert best["edge_1_0"] in ("conv1x1", "conv3x3")
    assert abs(obj.f({**best, "edge_1_0": "conv1x1"}) - obj.f({**best, "edge_1_0": "conv3x3"})) < 0.5
    assert 0.13 < np.mean(y >= y.min() + 8) < 0.17 and np.mean(y == 34.0) == pytest.approx(0.0218, abs=1e-3)
    assert obj.f({e: "none" for e in kt.CELL_EDGES}) == 34.0


def test_rung_objective_is_the_rung_mean() -> None:
    for obj in (kt.flip_like(), kt.ramp_like(), kt.crippled()):
        factor = obj.factors[0].name
        at2 = kt.rung_objective(obj, 2)
        exact = np.array(list(kt.factor_marginals(at2, factor).values()))
        mc = rung_truth(obj, factor, 2, n=40_000)
        assert np.allclose(exact, mc, atol=0.02 if obj.name != "crippled" else 0.1), (obj.name, exact, mc)
        assert kt.factor_marginals(kt.rung_objective(obj, MAX_EPOCHS), factor) == pytest.approx(
            kt.factor_marginals(obj, factor), abs=1e-12)
    obj = kt.crippled()   # a constant decay shifts every level alike
    shift = np.array(list(kt.factor_marginals(kt.rung_objective(obj, 2), "edge_1_0").values())) - np.array(
        list(kt.factor_marginals(obj, "edge_1_0").values()))
    assert np.allclose(shift, 3.0 * (1 / 2 - 1 / MAX_EPOCHS))


def _favourite_share(run, obj, factor: str) -> float:
    col = run.trials[factor].dropna()
    if obj.by_name[factor].type != "categorical":
        col = np.clip(np.searchsorted(obj.bins[factor], col.astype(float), side="right") - 1, 0, kt.N_BINS - 1)
        col = pd.Series(col)
    return float(col.astype(str).value_counts(normalize=True).iloc[0])


def test_greedy_tpe_concentrates() -> None:
    obj = kt.flip_like()
    greedy = kt.simulate_study(obj, sampler="tpe_greedy", seed=0, n_trials=120)
    default = kt.simulate_study(obj, sampler="tpe", seed=0, n_trials=120)
    assert 0.75 <= _favourite_share(greedy, obj, "width") <= 0.98
    assert _favourite_share(greedy, obj, "width") > _favourite_share(default, obj, "width")
    assert greedy.trials.iloc[0]["width"] == obj.baseline["width"]  # the baseline is still trial 0
    with pytest.raises(ValueError, match="tpe_greedy"):
        kt.simulate_study(obj, sampler="gp", seed=0, n_trials=3)


def test_noise_free_tables() -> None:
    """noise_sd 0: a tabular benchmark, one value per config and epoch."""
    obj = kt.flip_like()
    obj.noise_sd = 0.0
    config = {**obj.baseline, "width": 512}
    rng = np.random.default_rng(0)
    assert obj.curve(config, MAX_EPOCHS, rng) == obj.f(config)
    assert obj.curve(config, 2, rng) == obj.curve(config, 2, np.random.default_rng(9))
    assert np.allclose(obj.trajectory(config, rng), [obj.curve(config, e, rng) for e in range(1, MAX_EPOCHS + 1)])
    run = kt.simulate_study(obj, sampler="tpe_greedy", seed=1, n_trials=40)
    t = run.trials
    done = t[t["status"] == STATUS_COMPLETE]
    cfgs = done[run.params].to_dict("records")
    assert np.allclose(done["last_loss"], [obj.f(c) for c in cfgs], atol=1e-12)
    designed = kt.simulate_designed(obj, [config, obj.baseline], [0, 1], labels=["w512", "base"])
    assert np.allclose(designed.loc[designed["config"] == "w512", "loss"], obj.f(config))
