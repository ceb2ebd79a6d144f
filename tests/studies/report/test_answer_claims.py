"""The answer says nothing its tables do not say, and says every finding they hold.

Generated runs (benchmarks/known_truth.py: TPE + ASHA on objectives with exact
truth, Ray-free) go through the report's own analysis and answer; every claim
is then checked against the row it cites, and every marked row against the
claims. On the known truth, every modelled difference claim has the true sign.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from studies.report.analysis import analyse
from studies.report.answer import answer_claims, answer_parts
from studies.report.claims import Claim
from studies.spec.direction import Direction

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import known_truth as kt  # noqa: E402
from analysis_truth import rung_truth  # noqa: E402

RUNS = [("ramp_like", "tpe", 0, 120), ("ramp_like", "random", 1, 90), ("many_weak", "tpe", 2, 120),
        ("ramp_like", "tpe", 3, 40), ("many_weak", "tpe", 4, 12)]


def _analysed(name: str, sampler: str, seed: int, n_trials: int):
    obj = kt.OBJECTIVES[name]()
    run = kt.simulate_study(obj, sampler=sampler, seed=seed, n_trials=n_trials)
    an = analyse(run, obj.factors, metric=obj.metric, mode=obj.mode, baseline=obj.baseline, bins=obj.bins,
                 max_epochs=18, grace_period=2, reduction_factor=3, n_boot=40, seed=seed)
    claims = answer_claims(run, an, metric=obj.metric, mode=obj.mode, scale="interval", confirmation=None, loo=None,
                           question=[f.name for f in obj.factors], max_epochs=18)
    return obj, run, an, claims


@pytest.fixture(scope="module", params=RUNS, ids=[f"{n}-{s}-{seed}-{t}" for n, s, seed, t in RUNS])
def analysed(request):
    return _analysed(*request.param)


def _row(an, claim: Claim):
    table = next(t for t in an.modelled.tables if t.factor == claim.factor).table
    return table[table["level"].str.removesuffix(" (ref)") == claim.level].iloc[0]


def test_every_modelled_claim_is_its_table_row(analysed) -> None:
    obj, _, an, claims = analysed
    for c in claims:
        if c.evidence != "modelled" or c.factor is None:
            continue
        table = next(t for t in an.modelled.tables if t.factor == c.factor).table
        if c.kind == "difference" and not c.condition:
            r = _row(an, c)
            assert r["sig"] == c.mark != "" and r["withheld"] == "", c.text
            assert c.direction == ("better" if Direction(obj.mode).improves(r["delta"]) else "worse"), c.text
            assert r["delta_lo"] <= c.estimate <= r["delta_hi"] and (r["delta_lo"] > 0 or r["delta_hi"] < 0)
        elif c.kind == "difference":
            (other, given), = c.condition.items()
            inter = next(i for i in an.modelled.interactions if i.factor == c.factor and i.other == other)
            r = inter.table[(inter.table["level"] == c.level) & (inter.table["given"] == given)].iloc[0]
            assert r["sig"] == c.mark != "", c.text
            assert _row(an, c)["withheld"] != ""          # said conditionally only where the global mark is withheld
        elif c.kind == "no_difference":
            assert (table["sig"] == "").all(), c.text
            assert (table["withheld"] == "").all() or not (table["p_holm"] < 0.05).any(), c.text
        elif c.kind == "declined" and c.level is not None:
            r = _row(an, c)
            assert r["withheld"] != "" and r["sig"] == "" and r["withheld"] in c.text
        elif c.kind == "declined":
            assert an.modelled.gate and an.modelled.gate in c.text


def test_every_marked_row_is_in_the_answer(analysed) -> None:
    """A significant level, better or worse, is never hidden behind "no level differs"."""
    _, _, an, claims = analysed
    said = {(c.factor, c.level) for c in claims if c.kind == "difference" and c.evidence == "modelled" and not c.condition}
    for t in an.modelled.tables:
        for _, r in t.table[t.table["sig"] != ""].iterrows():
            assert (t.factor, r["level"]) in said, (t.factor, r["level"])
    conditional = {(c.factor, c.level, *c.condition.items()) for c in claims if c.kind == "difference" and c.condition}
    for inter in an.modelled.interactions:
        for _, r in inter.table[inter.table["sig"] != ""].iterrows():
            assert (inter.factor, r["level"], (inter.other, r["given"])) in conditional, (inter.factor, r["level"])


def test_ranking_only_when_separated_and_gated(analysed) -> None:
    _, _, an, claims = analysed
    for c in claims:
        if c.kind == "ranking":
            first = an.modelled.importance.iloc[0]
            assert not an.modelled.gate and first["factor"] == c.factor and first["first"] >= 0.95


def test_every_question_factor_has_one_line(analysed) -> None:
    obj, _, _, claims = analysed
    parts = answer_parts(claims, metric=obj.metric, mode=obj.mode, question=[f.name for f in obj.factors])
    for f in obj.factors:
        lines = [p for p in parts if p.startswith(f"**{f.name}** (")]
        assert len(lines) == 1, f.name
        assert re.match(rf"\*\*{f.name}\*\* \((answered|not answered)\) — ", lines[0])
        if "(not answered)" in lines[0]:   # why, and what would answer it: on its line, or on one shared line
            shared = [p for p in parts if p.startswith("**Not answered yet** (") and f"**{f.name}**" in p.split("):")[0]]
            assert ("What would answer it" in lines[0]) != bool(shared), lines[0]
            assert not shared or "What would answer them" in shared[0]


_TRUTH: dict = {}


def test_modelled_difference_claims_have_the_true_sign(analysed) -> None:
    """Against the exact marginal of the value reported at the claim's rung."""
    obj, _, an, claims = analysed
    for c in claims:
        if c.kind != "difference" or c.evidence != "modelled" or c.condition:
            continue
        t = next(t for t in an.modelled.tables if t.factor == c.factor)
        levels = list(t.table["level"].str.removesuffix(" (ref)"))
        key = (obj.name, c.factor, an.modelled.rung)
        truth = _TRUTH[key] if key in _TRUTH else _TRUTH.setdefault(key, rung_truth(obj, c.factor, key[2], n=20_000))
        true_delta = truth[levels.index(c.level)] - truth[levels.index(c.reference)]
        assert c.direction == ("better" if Direction(obj.mode).improves(true_delta) else "worse"), (c.text, true_delta)


def test_a_tiny_study_marks_nothing_and_says_why() -> None:
    obj, run, an, claims = _analysed("many_weak", "tpe", 4, 12)
    assert an.modelled.gate.startswith("only ")
    assert all(not c.mark for c in claims)
    assert all((t.table["sig"] == "").all() for t in an.modelled.tables)
    smoke = answer_claims(run, an, metric=obj.metric, mode=obj.mode, scale="interval", confirmation=None, loo=None,
                          question=[f.name for f in obj.factors], smoke=True, max_epochs=18)
    parts = answer_parts(smoke, metric=obj.metric, mode=obj.mode)
    assert parts[1].startswith("**Smoke run**") and not any(re.search(r" \*{1,2}\)", p) for p in parts)


def test_ratio_scale_marginals_stay_positive() -> None:
    """A positive metric whose low levels sit near 0: modelled on the log
    scale, no marginal and no interval end falls below 0."""
    import pandas as pd

    from studies.report.modelled import modelled_tables
    from studies.report.space import sample_space
    from studies.spec.param import Param

    x = Param("x", "float", low=0.0, high=1.0)
    c = Param("c", "categorical", ("a", "b"))
    rng = np.random.default_rng(0)
    cfg = sample_space([x, c], 60, rng)
    y = pd.Series(0.002 + 2.0 * cfg["x"].to_numpy() ** 3 * np.exp(rng.normal(0, 0.3, 60)), index=cfg.index)
    res = modelled_tables(cfg, y, [x, c], baseline={"c": "a"}, bins={}, mode="min", rung=1, n_boot=40, log_scale=True)
    assert res.log_scale
    for t in res.tables:
        assert (t.table[["marginal", "lo", "hi"]].to_numpy() > 0).all(), t.table


def test_a_factor_that_acts_after_the_modelled_rung_is_said_to() -> None:
    """A knob with no effect at epoch 2 and a large one at epoch 18 (a ramp that
    starts late): the answer says the modelled rung cannot judge it; a knob
    whose effect is the same at both epochs gets no such caveat."""
    import pandas as pd

    from studies.runs.trials import STATUS_COMPLETE, STATUS_PRUNED, RunTrials
    from studies.spec.param import Param

    late, early = Param("late", "categorical", ("a", "b")), Param("early", "categorical", ("x", "y"))
    rng = np.random.default_rng(0)
    rows, history = [], []
    for i in range(40):
        lv, ev = ("a", "b")[i % 2], ("x", "y")[(i // 2) % 2]
        for epoch in (1, 2, 3, 6, 12, 18) if i < 20 else (1, 2):    # half of them stopped at epoch 2, as by ASHA
            shift = 0.5 * (lv == "b") * (epoch >= 6) + 0.3 * (ev == "y")
            history.append({"trial_id": f"t{i}", "loss": 1.0 / epoch + shift + rng.normal(0, 0.01), "epoch": epoch})
        rows.append({"trial_id": f"t{i}", "status": STATUS_COMPLETE if i < 20 else STATUS_PRUNED,
                     "epochs": 18 if i < 20 else 2, "best_loss": 0.0,
                     "last_loss": history[-1]["loss"], "late": lv, "early": ev, "other": float(i)})
    run = RunTrials(pd.DataFrame(rows), pd.DataFrame(history), ["late", "early", "other"])
    an = analyse(run, [late, early], metric="loss", mode="min", baseline={"late": "a", "early": "x"}, bins={},
                 max_epochs=18, grace_period=2, reduction_factor=3, n_boot=20)
    assert an.rung == 2 and set(an.growth) == {"late"}
    claims = answer_claims(run, an, metric="loss", mode="min", scale="interval", confirmation=None, loo=None,
                           question=["late", "early"], max_epochs=18)
    line = next(p for p in answer_parts(claims, metric="loss", mode="min") if p.startswith("**late**"))
    assert "caveat: its level means over the 20 trials that reached epoch 18" in line
    assert "cannot judge" in line
    assert "cannot judge" not in next(p for p in answer_parts(claims, metric="loss", mode="min")
                                      if p.startswith("**early**"))


def test_screening_claims_are_its_table_rows_and_true() -> None:
    """The balanced start design's tables (designed, first rung) reach the
    answer: every marked screening row is a claim with that row's mark and
    direction, the true sign at the rung, and a ranking only when separated."""
    from test_screening import RUNG, _design_run, _tables

    obj = kt.ramp_like()
    run, design = _design_run(obj, 0)
    screening = _tables(obj, run, design, n_boot=100)
    an = analyse(run, obj.factors, metric=obj.metric, mode=obj.mode, baseline=obj.baseline, bins=obj.bins,
                 max_epochs=18, grace_period=2, reduction_factor=3, n_boot=20)
    claims = answer_claims(run, an, metric=obj.metric, mode=obj.mode, scale="interval", confirmation=None, loo=None,
                           question=[f.name for f in obj.factors], max_epochs=18, screening=screening)
    said = [c for c in claims if c.evidence == "designed: screening" and c.kind == "difference"]
    marked = [(t.factor, r["level"]) for t in screening.tables for _, r in t.table[t.table["sig"] != ""].iterrows()]
    assert marked and sorted((c.factor, c.level) for c in said) == sorted(marked)
    for c in said:
        t = next(t for t in screening.tables if t.factor == c.factor)
        r = t.table[t.table["level"] == c.level].iloc[0]
        assert c.mark == r["sig"] and c.rung == RUNG
        levels = list(t.table["level"].str.removesuffix(" (ref)"))
        truth = rung_truth(obj, c.factor, RUNG, n=20_000)
        true_delta = truth[levels.index(c.level)] - truth[levels.index(c.reference)]
        assert c.direction == ("better" if Direction(obj.mode).improves(true_delta) else "worse"), c.text
    parts = answer_parts(claims, metric=obj.metric, mode=obj.mode)
    assert any("designed, screening (epoch 2): " in p for p in parts)
    for c in claims:
        if c.kind == "ranking" and c.evidence == "designed: screening":
            assert screening.importance.iloc[0]["first_share"] >= 0.95 and c.factor == "schedule"


def test_a_reason_shared_by_several_factors_is_said_once_and_others_stay_on_their_line() -> None:
    from studies.report.claims import Claim

    why = "Not answered by the evidence so far: x. What would answer it: a baseline for {f} in `ablation.baseline`"
    claims = [Claim("declined", "none", factor=f, text=why.format(f=f), extra={"what_would_answer": True})
              for f in ("lr", "width")]
    claims += [Claim("declined", "none", factor="depth", text=why.format(f="depth"), extra={"what_would_answer": True})]
    parts = answer_parts(claims, metric="loss", mode="min", question=["lr", "width", "depth"])
    shared = [p for p in parts if p.startswith("**Not answered yet**")]
    assert shared == ["**Not answered yet** (**lr**, **width**, **depth**): X. What would answer them: a baseline for "
                      "each of them in `ablation.baseline`."]
    assert all("**Not answered yet** line below" in p for p in parts if p.startswith(("**lr**", "**width**", "**depth**")))
    smoke = [Claim("declined", "none", factor=f, text="not answered: a smoke run") for f in ("lr", "width")]
    parts = answer_parts(smoke, metric="loss", mode="min", question=["lr", "width"])
    assert "- **lr** (not answered) — not answered: a smoke run." in [f"- {p}" for p in parts]
    assert not any(p.startswith("**Not answered yet**") for p in parts)
