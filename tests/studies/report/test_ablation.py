"""Ablation statistics (studies/report/ablation.py) on constructed trials whose
true effects are known: ASHA rungs, binning, Holm, the reference level rule,
like-for-like rungs, and robustness to failed and still-running trials."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from studies.report.ablation import (
    NOT_SAMPLED,
    Param,
    asha_rungs,
    build_ablation,
    choose_rung,
    factor_table,
    holm,
    level_labels,
    values_at_epoch,
)
from studies.report.analysis import analyse
from studies.report.answer import answer_claims, answer_parts
from studies.runs.trials import STATUS_COMPLETE, STATUS_FAILED, STATUS_PRUNED, STATUS_RUNNING, RunTrials

MAX_EPOCHS, GRACE, RF = 18, 2, 3
SHAPE = Param("shape", "categorical", ("a", "b", "c"))
KNOB = Param("noise_knob", "float")
FACTORS = [SHAPE, KNOB]
# True effects: level c is better (lower loss) by 5 noise standard deviations; b
# is the same as the baseline a; noise_knob does nothing.
SIGMA = 0.2
EFFECT = {"a": 0.0, "b": 0.0, "c": -5 * SIGMA}


# --------------------------------------------------------------- constructing trials

def _run(rows: list[dict], history: list[dict], params: list[str]) -> RunTrials:
    """A RunTrials as load_trials builds it (rows from _trial_row, one history row per epoch).
    Each trial also gets a distinct value of a parameter no table looks at
    (``other``), as trials of a real search differ in their other parameters:
    without it, trials of one level would be identical configs, merged into one."""
    rows = [{**r, "other": r.get("other", 1.0 + i)} for i, r in enumerate(rows)]
    return RunTrials(trials=pd.DataFrame(rows), history=pd.DataFrame(history), params=[*params, "other"])


def _paragraph(run, an, **kwargs) -> str:
    claims = answer_claims(run, an, **kwargs)
    return " ".join(answer_parts(claims, metric=kwargs["metric"], mode=kwargs["mode"]))


def _trial_row(tid: str, status: str, epochs: int, values: list[float], mode: str, metric: str, **params) -> dict:
    """One row of RunTrials.trials, with the columns load_trials gives it."""
    finite = [v for v in values if math.isfinite(v)]
    best = (min(finite) if mode == "min" else max(finite)) if finite else math.nan
    return {"trial_id": tid, "status": status, "epochs": epochs, f"best_{metric}": best,
            f"last_{metric}": values[-1] if values else math.nan, **params,
            "optuna_number": None, "optuna_state": "", "seed": 0, "error": "", "trial_dir": f"trial_{tid}"}


def make_study(seed: int, *, n: int = 60, mode: str = "min", metric: str = "loss") -> RunTrials:
    """60 trials, 20 per shape level, noise_knob ~ U(0, 1).
    loss = 1 + effect(shape) + 1.5 / epoch + N(0, SIGMA), every epoch.
    Every trial runs to the grace period (epoch 2); 7 trials per level (a
    third) go on to epoch 6; ASHA-like, the best 4 at epoch 6 run all 18.
    mode='max' reports score = 10 - loss instead (higher is better)."""
    rng = np.random.default_rng(seed)
    shapes = np.array(["a", "b", "c"] * (n // 3))
    rng.shuffle(shapes)
    knob = rng.uniform(0.0, 1.0, n)
    curves = [1.0 + EFFECT[s] + 1.5 / np.arange(1, MAX_EPOCHS + 1) + rng.normal(0.0, SIGMA, MAX_EPOCHS) for s in shapes]
    epochs = np.full(n, GRACE)
    for level in ("a", "b", "c"):
        idx = np.flatnonzero(shapes == level)
        epochs[rng.choice(idx, size=len(idx) // 3 + 1, replace=False)] = GRACE * RF
    at_6 = np.flatnonzero(epochs == GRACE * RF)
    finalists = at_6[np.argsort([curves[i][GRACE * RF - 1] for i in at_6])[:4]]
    epochs[finalists] = MAX_EPOCHS
    rows, history = [], []
    for i in range(n):
        tid = f"t{i:03d}"
        values = [float(v) if mode == "min" else float(10.0 - v) for v in curves[i][: epochs[i]]]
        status = STATUS_COMPLETE if epochs[i] == MAX_EPOCHS else STATUS_PRUNED
        rows.append(_trial_row(tid, status, int(epochs[i]), values, mode, metric, shape=str(shapes[i]), noise_knob=float(knob[i])))
        history += [{"trial_id": tid, "epoch": e, metric: v} for e, v in enumerate(values, start=1)]
    return _run(rows, history, ["shape", "noise_knob"])


def ablate(run: RunTrials, *, mode: str = "min", metric: str = "loss", factors=FACTORS, baseline=None, bins=None, **kw):
    return build_ablation(run, metric=metric, mode=mode, factors=factors,
                          baseline={"shape": "a"} if baseline is None else baseline, bins=bins or {},
                          max_epochs=kw.pop("max_epochs", MAX_EPOCHS), grace_period=kw.pop("grace_period", GRACE),
                          reduction_factor=kw.pop("reduction_factor", RF), **kw)


def table_of(ab, factor: str):
    return next(t for t in ab.tables if t.factor == factor)


def row(t, level: str) -> pd.Series:
    levels = t.table["level"].str.removesuffix(" (ref)")
    return t.table[levels == level].iloc[0]


# --------------------------------------------------------------- true effects are found, null ones are not

def test_real_effect_is_flagged_and_null_factor_is_not():
    # Holm keeps the family-wise error rate of each factor's table at <= 0.05
    # (Mann-Whitney p-values are valid under the null: noise_knob is independent
    # of everything, so its bins are exchangeable). Over 5 independent seeds the
    # number of seeds where the null factor is flagged is then at most
    # Binomial(5, 0.05): P(>= 1) <= 0.23 but P(>= 2) <= 0.023, so "at most once"
    # is a tolerance a correct implementation fails less than 1 time in 40.
    # (The same holds for level b, which has no true effect either.)
    null_flags, b_flags = 0, 0
    for seed in range(5):
        run = make_study(seed)
        ab = ablate(run)
        shape = table_of(ab, "shape")
        assert shape.reference == "a" and shape.reference_why == "baseline in the spec"
        # The reference a has 7 trials at epoch 6; the 4 that run to 18 are the best at 6
        # (all c, or nearly), so a has < 2 there and the table is at epoch 6.
        assert shape.rung == 6, seed
        c = row(shape, "c")
        assert c["sig"] != "", (seed, shape.table)
        assert c["p_holm"] < 0.05
        assert c["delta_vs_ref"] < 0
        assert c["delta_vs_ref"] == pytest.approx(EFFECT["c"], abs=2 * SIGMA)  # ~4 standard errors
        assert c["best"] <= c["median"]
        b_flags += row(shape, "b")["sig"] != ""
        knob = table_of(ab, "noise_knob")
        null_flags += bool((knob.table["sig"] != "").any())
        assert (knob.table["p_holm"].dropna() >= knob.table["p"].dropna()).all()
    assert null_flags <= 1
    assert b_flags <= 1


def test_mode_max_flips_the_direction():
    run = make_study(3, mode="max", metric="score")
    ab = ablate(run, mode="max", metric="score")
    shape = table_of(ab, "shape")
    c, a = row(shape, "c"), row(shape, "a")
    assert c["sig"] != "" and c["p_holm"] < 0.05
    assert c["delta_vs_ref"] > 0                      # higher is better: c is higher
    # `best` is the maximum under mode='max', the minimum under mode='min'.
    ids = run.trials.set_index("trial_id")["shape"]
    values = values_at_epoch(run, "score", shape.rung)
    assert c["best"] == pytest.approx(values[ids.reindex(values.index) == "c"].max())
    assert a["best"] == pytest.approx(values[ids.reindex(values.index) == "a"].max())
    run_min = make_study(3)
    c_min = row(table_of(ablate(run_min), "shape"), "c")
    assert c_min["delta_vs_ref"] == pytest.approx(-c["delta_vs_ref"])  # score = 10 - loss
    assert c_min["p"] == pytest.approx(c["p"])
    an = analyse_run(run, mode="max", metric="score")
    text = _paragraph(run, an, metric="score", mode="max", scale="interval", confirmation=None, loo=None)
    assert text.startswith("(higher score is better)")
    assert re.search(r"\*\*shape\*\* \(answered\) — modelled \(epoch \d+\): c is better than a \(\+[\d.]+, Holm-level CI "
                     r"\[[\d.]+, [\d.]+\] \*+\)", text), text   # interval scale: no percent
    assert "b is" not in text                                 # b is the baseline's equal: no claim about it
    an_min = analyse_run(run_min)
    text_min = _paragraph(run_min, an_min, metric="loss", mode="min", scale="ratio", confirmation=None, loo=None)
    assert text_min.startswith("(lower loss is better)")
    assert re.search(r"c is better than a \(-[\d.]+ \(-\d+%\), Holm-level CI", text_min), text_min   # ratio: a percent


def analyse_run(run: RunTrials, *, mode: str = "min", metric: str = "loss", factors=None, baseline=None):
    return analyse(run, factors or [SHAPE, KNOB], metric=metric, mode=mode,
                   baseline={"shape": "a"} if baseline is None else baseline, bins={}, max_epochs=MAX_EPOCHS,
                   grace_period=GRACE, reduction_factor=RF, n_boot=60)


def test_answer_paragraph_when_the_best_level_is_the_reference():
    # With c (the truly best level) as the reference, every other level is worse, and the answer says so of
    # each of them (a worse level is a finding too: it must never read "no level differs").
    run = make_study(1)
    an = analyse_run(run, factors=[SHAPE], baseline={"shape": "c"})
    t = an.modelled.tables[0]
    assert t.reference == "c" and (t.table["delta"].dropna() > 0).all()
    text = _paragraph(run, an, metric="loss", mode="min", scale="interval", confirmation=None, loo=None)
    assert "a is worse than c" in text and "b is worse than c" in text and "no level differs" not in text
    # Under mode='max' the same data make c the worst: a and b beat it.
    an_max = analyse_run(run, mode="max", factors=[SHAPE], baseline={"shape": "c"})
    text_max = _paragraph(run, an_max, metric="loss", mode="max", scale="interval", confirmation=None, loo=None)
    assert "a is better than c" in text_max and "b is better than c" in text_max


# --------------------------------------------------------------- ASHA rungs

@pytest.mark.parametrize("args, expected", [
    ((18, 2, 3), [2, 6, 18]),
    ((4, 1, 3), [1, 3, 4]),
    ((20, 2, 3), [2, 6, 18, 20]),
    ((27, 1, 3), [1, 3, 9, 27]),
    ((10, 1, 2), [1, 2, 4, 8, 10]),
    ((16, 2, 2), [2, 4, 8, 16]),
    ((5, 5, 3), [5]),
    ((1, 1, 2), [1]),
    ((100, 10, 4), [10, 40, 100]),
])
def test_asha_rungs(args, expected):
    assert asha_rungs(*args) == expected


def test_asha_rungs_match_ray_milestones():
    """Ray's ASHA milestones are grace * rf**k below max_t; the report adds max_t."""
    for max_t, grace, rf in [(18, 2, 3), (20, 2, 3), (81, 1, 3), (50, 2, 4)]:
        n_rungs = int(np.log(max_t / grace) / np.log(rf) + 1)
        ray_like = sorted(int(grace * rf ** k) for k in range(n_rungs))
        assert asha_rungs(max_t, grace, rf) == sorted(set([m for m in ray_like if m < max_t] + [max_t]))


# --------------------------------------------------------------- Holm

def test_holm_hand_computed():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # sorted 0.001, 0.01, 0.02, 0.5: 4x, 3x, 2x, 1x with the running maximum
    assert holm([0.5, 0.01, 0.001, 0.02]) == pytest.approx([0.5, 0.03, 0.004, 0.04])
    assert holm([0.04]) == [0.04]
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_holm_nan_passthrough():
    out = holm([0.01, math.nan, 0.04])
    assert math.isnan(out[1])
    assert out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)  # m = 2, not 3
    assert all(math.isnan(p) for p in holm([math.nan, math.nan]))


def test_holm_is_monotone_and_at_least_raw():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = list(rng.uniform(0, 1, rng.integers(1, 8)) ** 3)
        adj = holm(p)
        assert all(a >= q - 1e-15 and a <= 1.0 for a, q in zip(adj, p))
        order = np.argsort(p)
        assert all(np.diff(np.asarray(adj)[order]) >= -1e-15)


# --------------------------------------------------------------- binning

def _bounds(label: str) -> tuple[float, float]:
    lo, hi = (float(s) for s in label.strip("[]()").split(","))
    return lo, hi


@pytest.mark.parametrize("n, bins", [(12, 3), (29, 3), (30, 4), (60, 4)])
def test_float_factor_bins(n, bins):
    """n active trials (plus 5 where the conditional parameter was not sampled)."""
    rng = np.random.default_rng(n)
    values = pd.Series(np.r_[rng.uniform(0.0, 1.0, n), [np.nan] * 5], index=[f"t{i}" for i in range(n + 5)])
    values = values.sample(frac=1.0, random_state=n)   # NaNs anywhere
    active = values.dropna()
    labels = level_labels(values, KNOB)
    assert labels.index.equals(values.index)
    assert (labels[values.isna()] == NOT_SAMPLED).all()
    found = labels[active.index]
    assert NOT_SAMPLED not in set(found) and "out of bins" not in set(found)
    assert found.nunique() == bins
    # Every active trial lies in exactly one bin, the one its label names
    # (half-open intervals, the last one closed).
    names = sorted(set(found), key=lambda s: _bounds(s)[0])
    assert names[-1].endswith("]") and all(s.endswith(")") for s in names[:-1])
    # The inner edges are rounded to 2 significant digits, so the labels show them exactly;
    # the outer ones are the data's min and max, shown to 3 digits: not checked here.
    lows = [-math.inf] + [_bounds(s)[0] for s in names[1:]]
    highs = [_bounds(s)[1] for s in names[:-1]] + [math.inf]
    for tid, v in active.items():
        holding = [s for s, lo, hi in zip(names, lows, highs) if lo <= v < hi]
        assert holding == [found[tid]], (v, found[tid], names)
    assert _bounds(names[0])[0] == pytest.approx(active.min(), rel=6e-2)
    assert _bounds(names[-1])[1] == pytest.approx(active.max(), rel=6e-2)
    counts = found.value_counts()
    assert counts.min() >= n / bins / 2.5  # quantile bins: roughly equal counts


def test_bins_are_three_under_30_and_four_from_30():
    rng = np.random.default_rng(7)
    for n in (10, 29, 30, 45):
        labels = level_labels(pd.Series(rng.uniform(0, 1, n)), KNOB)
        assert labels.nunique() == (3 if n < 30 else 4), n


def test_spec_edges_are_used_as_given():
    values = pd.Series([0.0, 0.1, 0.25, 0.5, 0.7, 1.0, np.nan, 1.5], index=list("abcdefgh"))
    labels = level_labels(values, KNOB, edges=[0.0, 0.5, 1.0])
    assert labels.to_dict() == {
        "a": "[0.0, 0.5)", "b": "[0.0, 0.5)", "c": "[0.0, 0.5)",
        "d": "[0.5, 1.0]", "e": "[0.5, 1.0]", "f": "[0.5, 1.0]",   # the last bin is closed
        "g": NOT_SAMPLED, "h": "out of bins",
    }
    # Edges are not re-rounded or moved to the data even if the data do not fill them.
    labels = level_labels(pd.Series([0.21, 0.22, 0.33, 0.41]), KNOB, edges=[0.2, 0.3, 0.4, 0.5])
    assert labels.tolist() == ["[0.2, 0.3)", "[0.2, 0.3)", "[0.3, 0.4)", "[0.4, 0.5]"]


def test_spec_edges_in_build_ablation():
    run = make_study(0)
    ab = ablate(run, bins={"noise_knob": [0.0, 0.5, 1.0]})
    knob = table_of(ab, "noise_knob")
    assert knob.table["level"].str.removesuffix(" (ref)").tolist() == ["[0.0, 0.5)", "[0.5, 1.0]"]
    assert knob.table["trials"].sum() == 60
    assert knob.reference == "[0.0, 0.5)" and knob.reference_why.startswith("lowest bin")


def test_int_factor_with_few_values_is_categorical():
    info = Param("n_layers", "int")
    values = pd.Series([1, 2, 3, 4, 5, 6] * 6)  # 36 trials, 6 distinct values: no bins
    labels = level_labels(values, info)
    assert sorted(set(labels)) == ["1", "2", "3", "4", "5", "6"]
    assert (labels == values.astype(str)).all()
    # A conditional int parameter comes as floats with NaN: still "3", not "3.0".
    cond = pd.Series([1.0, 2.0, np.nan, 3.0, 2.0])
    assert level_labels(cond, info).tolist() == ["1", "2", NOT_SAMPLED, "3", "2"]
    # 7 distinct values: binned; and a float factor with the same 6 values is binned too.
    many = pd.Series(list(range(1, 8)) * 5)
    assert all(s.startswith("[") for s in level_labels(many, info))
    assert all(s.startswith("[") for s in level_labels(values.astype(float), KNOB))
    # Numeric levels are ordered by value in the table, not as strings.
    rows, history = [], []
    for i, v in enumerate([10, 2, 3] * 4):
        rows.append(_trial_row(f"t{i}", STATUS_COMPLETE, 2, [1.0, float(v)], "min", "loss", n_layers=v))
        history += [{"trial_id": f"t{i}", "epoch": 1, "loss": 1.0}, {"trial_id": f"t{i}", "epoch": 2, "loss": float(v)}]
    ab = ablate(_run(rows, history, ["n_layers"]), factors=[info], baseline={"n_layers": 3}, max_epochs=2, grace_period=2)
    t = ab.tables[0]
    assert t.table["level"].tolist() == ["2", "3 (ref)", "10"]
    assert t.reference_why == "baseline in the spec"


def test_log_scale_binning():
    """lr ~ log-uniform over 4 decades: 4 bins of about 12 trials, edges near the decades."""
    rng = np.random.default_rng(3)
    values = pd.Series(np.exp(rng.uniform(np.log(1e-5), np.log(1e-1), 48)))
    labels = level_labels(values, Param("lr", "float", log=True))
    counts = labels.value_counts()
    assert len(counts) == 4
    assert counts.min() >= 8 and counts.max() <= 16   # roughly 12 each
    names = sorted(counts.index, key=lambda s: _bounds(s)[0])
    inner = [_bounds(s)[0] for s in names[1:]]
    for edge, decade in zip(inner, (1e-4, 1e-3, 1e-2)):
        assert decade / 3 < edge < decade * 3, inner
    assert _bounds(names[0])[0] == pytest.approx(values.min(), rel=6e-2)
    assert _bounds(names[-1])[1] == pytest.approx(values.max(), rel=6e-2)


def test_narrow_range_still_gets_four_bins():
    values = pd.Series(np.linspace(0.990, 0.999, 40))
    labels = level_labels(values, Param("beta2", "float"))
    assert labels.nunique() == 4


# --------------------------------------------------------------- values at a rung, choice of rung

def _ladder_history() -> RunTrials:
    rows, history = [], []
    plan = {"t0": 2, "t1": 2, "t2": 6, "t3": 4, "t4": 18, "t5": 0}
    for tid, ep in plan.items():
        values = [10.0 - e + int(tid[1]) * 0.01 for e in range(1, ep + 1)]
        if tid == "t2":
            values[5] = math.nan   # a non-finite value at epoch 6 is not a value
        rows.append(_trial_row(tid, STATUS_COMPLETE, ep, values, "min", "loss", shape="a", noise_knob=0.5))
        history += [{"trial_id": tid, "epoch": e, "loss": v} for e, v in enumerate(values, start=1)]
    return _run(rows, history, ["shape", "noise_knob"])


def test_values_at_epoch_only_takes_trials_that_reached_it():
    run = _ladder_history()
    at2 = values_at_epoch(run, "loss", 2)
    assert sorted(at2.index) == ["t0", "t1", "t2", "t3", "t4"]
    assert at2["t4"] == pytest.approx(8.04)               # the value *at* epoch 2, not the best
    assert sorted(values_at_epoch(run, "loss", 6).index) == ["t4"]   # t2's epoch-6 value is NaN
    assert sorted(values_at_epoch(run, "loss", 4).index) == ["t2", "t3", "t4"]
    assert values_at_epoch(run, "loss", 18).tolist() == [pytest.approx(-7.96)]
    assert values_at_epoch(run, "loss", 19).empty
    assert values_at_epoch(run, "no_such_metric", 2).empty
    assert values_at_epoch(RunTrials(pd.DataFrame(), pd.DataFrame(), []), "loss", 2).empty


def test_choose_rung():
    run = make_study(0)
    rung, counts = choose_rung(run, "loss", asha_rungs(MAX_EPOCHS, GRACE, RF))
    assert counts == {2: 60, 6: 21, 18: 4}
    assert rung == 6   # 4 at 18 < max(4, min(8, 25% of 60)) = 8
    rung, _ = choose_rung(run, "loss", [2, 6, 18], min_trials=4)
    assert rung == 18
    small = _ladder_history()
    rung, counts = choose_rung(small, "loss", [2, 6, 18])
    assert counts == {2: 5, 6: 1, 18: 1} and rung == 2
    empty = RunTrials(pd.DataFrame(), pd.DataFrame(), [])
    assert choose_rung(empty, "loss", [2, 6, 18]) == (2, {2: 0, 6: 0, 18: 0})


# --------------------------------------------------------------- each factor at its own deepest comparable rung

def _mixed_rungs(ref_epochs: list[int]) -> RunTrials:
    """shape: the reference `a` ran ``ref_epochs``; b and c: 6 trials each, 4 to
    epoch 6, 2 of those to 18. `flag` (x/y) alternates across all trials."""
    plan = [("a", e) for e in ref_epochs] + [(s, e) for s in ("b", "c") for e in (2, 2, 6, 6, 18, 18)]
    rows, history = [], []
    rng = np.random.default_rng(0)
    for i, (shape, ep) in enumerate(plan):
        tid = f"t{i:02d}"
        values = [1.0 + EFFECT[shape] + 1.5 / e + rng.normal(0, SIGMA) for e in range(1, ep + 1)]
        rows.append(_trial_row(tid, STATUS_COMPLETE if ep == MAX_EPOCHS else STATUS_PRUNED, ep, values, "min", "loss",
                               shape=shape, flag="x" if i % 2 == 0 else "y"))
        history += [{"trial_id": tid, "epoch": e, "loss": v} for e, v in enumerate(values, start=1)]
    return _run(rows, history, ["shape", "flag"])


FLAG = Param("flag", "categorical", ("x", "y"))


def test_reference_stopped_at_grace_falls_back_to_rung_2():
    run = _mixed_rungs([2] * 6)
    ab = ablate(run, factors=[SHAPE, FLAG], baseline={"shape": "a", "flag": "x"})
    shape = table_of(ab, "shape")
    assert shape.rung == 2 and shape.at_rung == 18
    assert row(shape, "a")["at_rung"] == 6 and row(shape, "c")["at_rung"] == 6
    assert row(shape, "a")["full_budget"] == 0 and row(shape, "c")["full_budget"] == 2
    # flag's reference x reached 18 twice, and so did y: it is compared at 18.
    flag = table_of(ab, "flag")
    assert flag.rung == 18 and flag.at_rung == 4
    assert row(flag, "x")["at_rung"] == 2 and row(flag, "y")["at_rung"] == 2
    # The values are those at the table's rung.
    at2 = values_at_epoch(run, "loss", 2)
    ids = run.trials.set_index("trial_id")["shape"]
    assert row(shape, "c")["mean"] == pytest.approx(at2[ids.reindex(at2.index) == "c"].mean())


def test_reference_that_reached_6_is_compared_at_6():
    run = _mixed_rungs([2, 2, 6, 6, 6])
    ab = ablate(run, factors=[SHAPE, FLAG], baseline={"shape": "a"})
    shape = table_of(ab, "shape")
    assert shape.rung == 6 and shape.at_rung == 3 + 4 + 4
    assert row(shape, "a")["at_rung"] == 3 and row(shape, "a")["trials"] == 5
    assert row(shape, "b")["at_rung"] == 4
    at6 = values_at_epoch(run, "loss", 6)
    ids = run.trials.set_index("trial_id")["shape"]
    assert row(shape, "a")["mean"] == pytest.approx(at6[ids.reindex(at6.index) == "a"].mean())
    assert row(shape, "c")["delta_vs_ref"] == pytest.approx(
        at6[ids.reindex(at6.index) == "c"].mean() - at6[ids.reindex(at6.index) == "a"].mean())


def test_reference_with_a_single_trial_at_a_rung_is_not_compared_there():
    run = _mixed_rungs([2, 2, 2, 6])   # one `a` at 6: not enough to compare
    shape = table_of(ablate(run, factors=[SHAPE]), "shape")
    assert shape.rung == 2


def test_forced_rung():
    run = _mixed_rungs([2] * 6)
    ab = ablate(run, factors=[SHAPE, FLAG], rung=6)
    assert ab.rung == 6 and all(t.rung == 6 for t in ab.tables)
    assert table_of(ab, "shape").table["p"].isna().all()   # `a` never reached 6: nothing to test


# --------------------------------------------------------------- the reference level rule

def _conditional_study() -> RunTrials:
    """`knob` (float) only sampled for shapes b and c."""
    rng = np.random.default_rng(5)
    rows, history = [], []
    for i in range(36):
        shape = ("a", "b", "c")[i % 3]
        knob = float(rng.uniform(0, 1)) if shape != "a" else None
        values = [1.0 + EFFECT[shape] + 1.5 / e + rng.normal(0, SIGMA) for e in (1, 2)]
        rows.append(_trial_row(f"t{i:02d}", STATUS_PRUNED, 2, values, "min", "loss", shape=shape, knob=knob))
        history += [{"trial_id": f"t{i:02d}", "epoch": e, "loss": v} for e, v in enumerate(values, start=1)]
    return _run(rows, history, ["shape", "knob"])


def test_reference_is_the_spec_baseline():
    run = _conditional_study()
    ab = ablate(run, factors=[SHAPE], baseline={"shape": "b"})
    t = ab.tables[0]
    assert (t.reference, t.reference_why) == ("b", "baseline in the spec")
    assert t.table["level"].tolist() == ["a", "b (ref)", "c"]
    assert math.isnan(row(t, "b")["p"]) and math.isnan(row(t, "b")["delta_vs_ref"])


def test_conditional_factor_excluded_by_the_baseline_compares_its_bins_from_the_lowest():
    # The baseline shape=a switches knob off; knob's bins are still compared
    # with each other (from the lowest), and "(not sampled)" is one more level.
    run = _conditional_study()
    knob = Param("knob", "float", when={"shape": ("b", "c")})
    ab = ablate(run, factors=[SHAPE, knob], baseline={"shape": "a"})
    t = table_of(ab, "knob")
    levels = t.table["level"].tolist()
    assert t.reference == levels[0].removesuffix(" (ref)") and t.reference.startswith("[")
    assert t.reference_why == "lowest bin; the baseline shape=a does not sample it"
    assert levels[-1] == NOT_SAMPLED and len(levels) == 4   # 24 sampled trials: 3 bins
    assert t.table["p"].notna().sum() == 3                  # two bins and (not sampled) vs the lowest bin
    assert row(t, NOT_SAMPLED)["trials"] == 12
    assert t.table["trials"].sum() == 36


def test_conditional_factor_sampled_under_the_baseline_uses_the_first_level():
    run = _conditional_study()
    knob = Param("knob", "float", when={"shape": ("b", "c")})
    ab = ablate(run, factors=[knob], baseline={"shape": "b"})
    t = ab.tables[0]
    assert t.reference == t.table["level"].iloc[0].removesuffix(" (ref)") and t.reference.startswith("[")
    assert t.reference_why == "lowest bin (the spec names no baseline for this factor)"


def test_no_baseline_uses_the_first_level_in_choice_order():
    run = _conditional_study()
    ab = ablate(run, factors=[Param("shape", "categorical", ("c", "a", "b"))], baseline={})
    t = ab.tables[0]
    assert t.reference == "c" and t.reference_why.startswith("first level")
    assert t.table["level"].tolist() == ["c (ref)", "a", "b"]


def test_numeric_baseline_selects_the_bin_that_holds_it():
    run = make_study(0)
    ab = ablate(run, baseline={"shape": "a", "noise_knob": 0.7}, bins={"noise_knob": [0.0, 0.5, 1.0]})
    t = table_of(ab, "noise_knob")
    assert t.reference == "[0.5, 1.0]" and t.reference_why == "bin holding the spec's baseline 0.7"


def test_numeric_baseline_on_a_bin_edge():
    lr = Param("lr", "float", log=True)
    values = [0.0002, 0.0005, 0.001, 0.001, 0.002, 0.005]
    rows, history = [], []
    for i, v in enumerate(values):
        rows.append(_trial_row(f"t{i}", STATUS_PRUNED, 2, [1.0, 1.0 + v], "min", "loss", lr=v))
        history += [{"trial_id": f"t{i}", "epoch": 1, "loss": 1.0}, {"trial_id": f"t{i}", "epoch": 2, "loss": 1.0 + v}]
    run = _run(rows, history, ["lr"])
    labels = level_labels(run.trials.set_index("trial_id")["lr"], lr, [1e-4, 1e-3, 1e-2])
    assert labels["t2"] == "[0.001, 0.01]"
    ab = ablate(run, factors=[lr], baseline={"lr": 0.001}, bins={"lr": [1e-4, 1e-3, 1e-2]}, max_epochs=2)
    assert ab.tables[0].reference == "[0.001, 0.01]"


def test_categorical_float_choices_with_a_baseline():
    w = Param("w", "categorical", (0.5, 1.0, 2.0))
    rows, history = [], []
    rng = np.random.default_rng(0)
    for i in range(30):
        v = w.choices[i % 3]
        values = [2.0, 1.0 + (v == 2.0) + rng.normal(0, 0.1)]
        rows.append(_trial_row(f"t{i}", STATUS_PRUNED, 2, values, "min", "loss", w=v))
        history += [{"trial_id": f"t{i}", "epoch": e, "loss": x} for e, x in enumerate(values, start=1)]
    ab = ablate(_run(rows, history, ["w"]), factors=[w], baseline={"w": 1.0}, max_epochs=2)
    t = ab.tables[0]
    assert t.table["level"].str.endswith("(ref)").sum() == 1
    assert t.table["p"].notna().sum() == 2


def test_conditional_int_factor_labels_and_baseline():
    hidden = Param("hidden", "int", when={"shape": ("b", "c")})
    rows, history = [], []
    for i in range(20):
        shape, h = ("a", None) if i % 4 == 3 else ("b", (256, 512, 1024)[i % 4])
        values = [2.0, 1.0 + (h or 0) / 1000]
        rows.append(_trial_row(f"t{i}", STATUS_PRUNED, 2, values, "min", "loss", shape=shape, hidden=h))
        history += [{"trial_id": f"t{i}", "epoch": e, "loss": x} for e, x in enumerate(values, start=1)]
    run = _run(rows, history, ["shape", "hidden"])
    assert run.trials["hidden"].dtype == float       # None -> NaN makes the column float, as in load_trials
    labels = level_labels(run.trials.set_index("trial_id")["hidden"], hidden)
    assert set(labels) == {"256", "512", "1024", NOT_SAMPLED}
    ab = ablate(run, factors=[hidden], baseline={"hidden": 1024}, max_epochs=2)
    assert (ab.tables[0].reference, ab.tables[0].reference_why) == ("1024", "baseline in the spec")


def test_numeric_baseline_outside_the_bins_of_a_conditional_factor():
    shapes = Param("ramp_shape", "categorical", ("constant", "step", "linear", "exponential"))
    weight = Param("initial_weight", "float", log=True, when={"ramp_shape": ("step", "linear", "exponential")})
    rng = np.random.default_rng(0)
    rows, history = [], []
    for i in range(24):
        shape = shapes.choices[i % 4]
        w = None if shape == "constant" else float(np.exp(rng.uniform(np.log(0.01), np.log(0.5))))
        values = [2.0, 1.0 + rng.normal(0, 0.1)]
        rows.append(_trial_row(f"t{i}", STATUS_PRUNED, 2, values, "min", "val_mse", ramp_shape=shape, initial_weight=w))
        history += [{"trial_id": f"t{i}", "epoch": e, "val_mse": x} for e, x in enumerate(values, start=1)]
    run = _run(rows, history, ["ramp_shape", "initial_weight"])
    ab = ablate(run, metric="val_mse", factors=[shapes, weight],
                baseline={"ramp_shape": "constant", "initial_weight": 1.0}, max_epochs=2)
    t = table_of(ab, "initial_weight")
    assert t.table["trials"].sum() == 24 and t.reference in set(t.table["level"].str.removesuffix(" (ref)"))


# --------------------------------------------------------------- robustness

def test_failed_and_running_trials_do_not_break_build_ablation():
    run = make_study(2)
    rows, history = run.trials.to_dict("records"), run.history.to_dict("records")
    # failed at epoch 1 with a NaN metric, and failed before reporting anything
    rows.append(_trial_row("f1", STATUS_FAILED, 1, [math.nan], "min", "loss", shape="c", noise_knob=0.3))
    history.append({"trial_id": "f1", "epoch": 1, "loss": math.nan})
    rows.append(_trial_row("f2", STATUS_FAILED, 0, [], "min", "loss", shape="a", noise_knob=0.9))
    # still running: between rungs, and not yet at the grace period
    rows.append(_trial_row("r1", STATUS_RUNNING, 4, [2.0, 1.8, 1.7, 1.6], "min", "loss", shape="b", noise_knob=0.1))
    history += [{"trial_id": "r1", "epoch": e, "loss": v} for e, v in zip(range(1, 5), [2.0, 1.8, 1.7, 1.6])]
    rows.append(_trial_row("r2", STATUS_RUNNING, 1, [2.0], "min", "loss", shape="a", noise_knob=None))
    history.append({"trial_id": "r2", "epoch": 1, "loss": 2.0})
    run2 = _run(rows, history, run.params)
    base = ablate(run)
    ab = ablate(run2)
    assert ab.n_trials == 64
    assert ab.rungs[2] == 61          # r1 reached 2; f1, f2, r2 did not report a finite value at 2
    assert ab.rungs[6] == base.rungs[6]
    shape = table_of(ab, "shape")
    assert shape.table["trials"].sum() == 64
    # At epoch 6 (the chosen rung), nothing changed.
    assert shape.rung == 6
    pd.testing.assert_frame_equal(shape.table.drop(columns=["trials"]), table_of(base, "shape").table.drop(columns=["trials"]))
    knob = table_of(ab, "noise_knob")
    assert row(knob, NOT_SAMPLED)["trials"] == 1   # r2 had no noise_knob
    assert knob.table["trials"].sum() == 64


def test_all_trials_failed():
    rows = [_trial_row(f"f{i}", STATUS_FAILED, 1, [math.nan], "min", "loss", shape="abc"[i % 3], noise_knob=i / 10)
            for i in range(9)]
    history = [{"trial_id": f"f{i}", "epoch": 1, "loss": math.nan} for i in range(9)]
    ab = ablate(_run(rows, history, ["shape", "noise_knob"]))
    assert ab.values.empty and len(ab.tables) == 2
    for t in ab.tables:
        assert t.table["at_rung"].sum() == 0 and t.table["p"].isna().all() and (t.table["sig"] == "").all()


def test_empty_trials_give_no_tables():
    empty = RunTrials(pd.DataFrame(), pd.DataFrame(), ["shape", "noise_knob"])
    ab = ablate(empty)
    assert ab.tables == [] and ab.n_trials == 0 and ab.values.empty
    assert ab.rung == 2
    # Trials that started but reported no epoch yet: one table per factor, all empty.
    started = _run([_trial_row("r0", STATUS_RUNNING, 0, [], "min", "loss", shape="a", noise_knob=0.5)], [], ["shape", "noise_knob"])
    ab = ablate(started)
    assert [t.factor for t in ab.tables] == ["shape", "noise_knob"]
    assert all(t.table["at_rung"].sum() == 0 and t.table["trials"].sum() == 1 for t in ab.tables)


def test_factor_missing_from_trials_is_all_not_sampled():
    run = make_study(0)
    ab = ablate(run, factors=[SHAPE, Param("absent", "float")])
    t = table_of(ab, "absent")
    assert t.table["level"].tolist() == [NOT_SAMPLED + " (ref)"] and t.table["trials"].iloc[0] == 60


def test_factor_table_directly():
    run = make_study(4)
    values = values_at_epoch(run, "loss", 2)
    t = factor_table(SHAPE, run, values, mode="min", max_epochs=MAX_EPOCHS, baseline={"shape": "a"})
    assert list(t.table.columns) == ["level", "trials", "at_rung", "repeats", "full_budget", "best", "median", "mean", "ci95",
                                     "delta_vs_ref", "p", "p_holm", "sig"]
    assert t.table["trials"].tolist() == [20, 20, 20] and t.table["at_rung"].tolist() == [20, 20, 20]
    ids = run.trials.set_index("trial_id")["shape"]
    c = values[ids.reindex(values.index) == "c"]
    r = row(t, "c")
    assert r["mean"] == pytest.approx(c.mean()) and r["median"] == pytest.approx(c.median()) and r["best"] == pytest.approx(c.min())
    assert r["ci95"] == pytest.approx(stats.t.ppf(0.975, 19) * c.std(ddof=1) / math.sqrt(20))
    assert r["sig"] == "**" and r["p_holm"] < 0.01


def test_identical_configs_are_one_observation():
    # The same config proposed 5 times (as TPE does late in a study) is one
    # observation, its mean: counting it 5 times would shrink the p-value of a
    # comparison that rests on two distinct configs.
    rows, history = [], []
    configs = [("a", 0.1)] * 5 + [("a", 0.2), ("b", 0.3), ("b", 0.4), ("b", 0.5)]
    for i, (shape, knob) in enumerate(configs):
        v = 1.0 + (0.5 if shape == "b" else 0.0) + 0.01 * i
        rows.append(_trial_row(f"t{i}", STATUS_PRUNED, 2, [2.0, v], "min", "loss", shape=shape, noise_knob=knob, other=0.0))
        history += [{"trial_id": f"t{i}", "epoch": 1, "loss": 2.0}, {"trial_id": f"t{i}", "epoch": 2, "loss": v}]
    run = _run(rows, history, ["shape", "noise_knob"])
    t = factor_table(SHAPE, run, values_at_epoch(run, "loss", 2), mode="min", max_epochs=2, baseline={"shape": "a"}, edges=None)
    a, b = row(t, "a"), row(t, "b")
    assert (a["trials"], a["at_rung"], a["repeats"]) == (5 + 1, 2, 4)
    merged_a = np.array([np.mean([1.0 + 0.01 * i for i in range(5)]), 1.05])
    assert a["mean"] == pytest.approx(merged_a.mean())
    b_x = np.array([1.56, 1.57, 1.58])
    assert b["p"] == pytest.approx(stats.mannwhitneyu(b_x, merged_a, alternative="two-sided").pvalue)
