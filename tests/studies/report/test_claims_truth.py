"""benchmarks/claims_truth.py: each claim of the answer marked true or false
against the exact truth (benchmarks/known_truth.py), on hand-made claims."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from studies.report.claims import Claim

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))
import claims_truth as ct  # noqa: E402
import known_truth as kt  # noqa: E402


def _one(obj, claim: Claim, **kw) -> dict:
    (row,) = ct.score_claims(obj, [claim], **kw)
    return row


def _diff(evidence: str = "modelled", **kw) -> Claim:
    base = dict(factor="width", rung=2, level="512", reference="128", text="x")
    return Claim("difference", evidence, **{**base, **kw})


@pytest.fixture(scope="module")
def flip() -> kt.Objective:
    return kt.flip_like()


def test_global_difference_right_and_wrong_sign(flip: kt.Objective) -> None:
    """Over the declared space 512 is worse than 128 (the global marginal)."""
    right = _one(flip, _diff(direction="worse"))
    wrong = _one(flip, _diff(direction="better"))
    assert right["correct"] is True and wrong["correct"] is False
    truth = kt.factor_marginals(kt.rung_objective(flip, 2), "width")
    assert right["truth"] == pytest.approx(truth["512"] - truth["128"]) and right["truth"] > 0
    # the reference's " (ref)" suffix and a screening table's rung are read the same way
    assert _one(flip, _diff("designed: screening", direction="worse", reference="128 (ref)", rung=6))["correct"] is True


def test_conditional_difference_uses_the_conditional_truth(flip: kt.Objective) -> None:
    """Within small lr 512 is better: the same level pair, the opposite answer."""
    small = kt.report_label(flip, "lr", kt.levels(flip, "lr")[0])
    assert _one(flip, _diff(direction="better", condition={"lr": small}))["correct"] is True
    assert _one(flip, _diff(direction="worse", condition={"lr": small}))["correct"] is False
    top = kt.levels(flip, "lr")[-1]   # any spelling of a bin: the modelled tables' or known_truth's
    assert _one(flip, _diff(direction="worse", condition={"lr": f"[{top[0]}, {top[1]}]"}))["correct"] is True


def test_numeric_levels_and_mode_max(flip: kt.Objective) -> None:
    lr = kt.levels(flip, "lr")
    labels = {lv: kt.report_label(flip, "lr", lv) for lv in lr}
    truth = kt.factor_marginals(kt.rung_objective(flip, 2), "lr")
    worst = max(lr, key=truth.get)
    row = _one(flip, _diff(factor="lr", level=labels[worst], reference=labels[lr[1]], direction="worse"))
    assert row["correct"] is True
    maxed = kt.flip_like()
    maxed.mode = "max"   # the same numbers, higher is better: "worse" now means lower
    assert _one(maxed, _diff(direction="worse"))["correct"] is False
    assert _one(maxed, _diff(direction="better"))["correct"] is True


def test_leave_one_out_at_the_best_config(flip: kt.Objective) -> None:
    """At small lr 512 beats 128 (the best config's own neighbourhood)."""
    best = {"lr": 2e-4, "width": 512, "dropout": 0.1, "activation": "relu"}
    variant = {**best, "width": 128.0}
    loo = dict(factor="width", rung=18, extra={"best": best, "variant": variant})
    assert _one(flip, _diff("designed: leave-one-out", direction="better", **loo))["correct"] is True
    assert _one(flip, _diff("designed: leave-one-out", direction="worse", **loo))["correct"] is False
    # level and reference swapped (the variant's setting named first): still read by which config holds it
    swapped = _one(flip, _diff("designed: leave-one-out", direction="worse", **{**loo, "level": "128", "reference": "512"}))
    assert swapped["correct"] is True and swapped["truth"] == pytest.approx(flip.f(variant) - flip.f(best))
    # a numeric factor's level as the LOO table prints it (3 significant digits)
    num = dict(factor="lr", rung=18, extra={"best": best, "variant": {**best, "lr": 1e-3}})
    assert _one(flip, _diff("designed: leave-one-out", direction="better", level="0.0002", reference="0.001", **num))[
        "correct"] is (flip.f(best) < flip.f({**best, "lr": 1e-3}))
    missing = _one(flip, _diff("designed: leave-one-out", direction="better", factor="width", rung=18))
    assert missing["correct"] is None and "extra" in missing["why"]


def test_a_difference_where_the_truth_has_none_is_false(flip: kt.Objective) -> None:
    row = _one(flip, _diff(factor="activation", level="gelu", reference="relu", direction="better"))
    assert row["correct"] is False and "no difference" in row["why"]
    cell = kt.crippled()
    dead = _diff(factor="edge_2_1", level="conv3x3", reference="skip", direction="better", condition={"edge_1_0": "none"})
    live = _diff(factor="edge_2_1", level="conv3x3", reference="skip", direction="better", condition={"edge_1_0": "conv3x3"})
    assert _one(cell, dead)["correct"] is False and _one(cell, live)["correct"] is True


def test_ranking_declines_and_the_rest() -> None:
    cell = kt.crippled()
    rows = ct.score_claims(cell, [
        Claim("ranking", "modelled", "edge_1_0 first", factor="edge_1_0", rung=2),
        Claim("ranking", "modelled", "edge_3_2 first", factor="edge_3_2", rung=2),
        Claim("declined", "modelled", "modelled: no claim, out-of-bag R^2 0.12 < 0.5", factor="edge_1_0", rung=2),
        Claim("declined", "none", "  ", factor="edge_2_0"),
        Claim("no_difference", "modelled", "no level differs", factor="edge_2_0", rung=2, reference="skip"),
        Claim("no_ranking", "modelled", "no clear ranking", rung=2),
        Claim("best", "observed", "best trial", rung=18),
        Claim("note", "none", "banner"),
        Claim("difference", "designed: confirmation", "best beats baseline", level="best", reference="baseline",
              direction="better", rung=18),
    ])
    assert [r["correct"] for r in rows] == [True, False] + [None] * 7
    assert rows[0]["truth"] == "edge_1_0" == kt.true_importance_order(cell)[0]
    assert [r["declined"] for r in rows] == [False, False, True, True] + [False] * 5
    assert rows[2]["has_reason"] and not rows[3]["has_reason"]
    assert "not scored" in rows[-1]["why"]


def test_custom_truth_functions(flip: kt.Objective) -> None:
    """The scorer asks ``rung_truth_fn`` for the rung's truth and ``full_budget_f`` for a config's value."""
    calls = []

    def truth(factor, rung, condition):
        calls.append((factor, rung, condition))
        return {"64": 0.0, "128": 1.0, "256": 2.0, "512": -1.0}

    assert _one(flip, _diff(direction="better", condition={"lr": "x"}), rung_truth_fn=truth)["correct"] is True
    assert calls == [("width", 2, ("lr", "x"))]
    loo = _diff("designed: leave-one-out", direction="better", rung=18,
                extra={"best": {"width": 512}, "variant": {"width": 128}})
    assert _one(flip, loo, full_budget_f=lambda c: -float(c["width"]))["correct"] is True
    assert _one(flip, loo, full_budget_f=lambda c: float(c["width"]))["correct"] is False


def test_level_keys_cover_both_spellings(flip: kt.Objective) -> None:
    keys = ct.level_keys(flip, "dropout")
    assert keys["[0.000, 0.125)"] == keys["[0, 0.125)"] == kt.levels(flip, "dropout")[0]
    assert ct.level_keys(flip, "width") == {"64": "64", "128": "128", "256": "256", "512": "512"}
