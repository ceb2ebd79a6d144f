"""The trade-off report's numbers on hand-made runs whose front, hypervolume,
baseline verdict, level shares and confirmation are known."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studies.report.confirmation import load_front_confirmation
from studies.report.tradeoff import front_caption, front_table, trade_off, tradeoff_sentences
from studies.runs.designed import BASELINE_LABEL, plan_front_confirmation
from studies.runs.run_folder import RunFolder
from studies.runs.trials import RunTrials, full_budget_values
from studies.spec.param import Param

METRICS, MODES = ["error", "speed"], ["min", "max"]
FACTORS = [Param("mode", "categorical", ("a", "b")), Param("x", "float", low=0.0, high=4.0)]


def _run(rows: list[tuple[str, str, float, float, float, int]]) -> RunTrials:
    """(trial_id, mode, x, error, speed, epochs reached); values are the same at every epoch."""
    trials, history = [], []
    for n, (tid, mode, x, err, speed, epochs) in enumerate(rows):
        trials.append({"trial_id": tid, "status": "complete" if epochs == 9 else "stopped by ASHA", "epochs": epochs,
                       "mode": mode, "x": x, "optuna_number": n, "last_error": err})
        history += [{"trial_id": tid, "epoch": e, "error": err + (9 - e), "speed": speed} for e in range(1, epochs + 1)]
    return RunTrials(pd.DataFrame(trials), pd.DataFrame(history), ["mode", "x"])


RUN = _run([
    ("base", "b", 2.0, 3.0, 1.0, 9),   # baseline: dominated by t1 and t2
    ("t1", "a", 2.0, 2.0, 2.0, 9),     # front
    ("t2", "a", 1.0, 1.0, 1.0, 9),     # front (least error)
    ("t3", "a", 3.0, 4.0, 3.0, 9),     # front (most speed)
    ("t4", "b", 3.0, 5.0, 2.5, 9),     # dominated by t3
    ("t5", "a", 0.5, 0.1, 9.0, 3),     # would dominate everything, but stopped at epoch 3: not compared
])


def test_front_hypervolume_and_the_baseline() -> None:
    t = trade_off(RUN, metrics=METRICS, modes=MODES, factors=FACTORS, bins={}, max_epochs=9, baseline_trial="base")
    assert list(t.front["trial_id"]) == ["t2", "t1", "t3"]          # best error first
    assert set(full_budget_values(RUN, METRICS, 9)["trial_id"]) == {"base", "t1", "t2", "t3", "t4"}
    # reference: worst error 5 + 10% of 4 = 5.4; worst speed 1 - 10% of 2 = 0.8
    assert t.reference == pytest.approx([5.4, 0.8])
    # staircase, error x speed rectangles against (5.4, 0.8): t2 (1,1), t1 (2,2), t3 (4,3)
    expected = (5.4 - 1.0) * (1.0 - 0.8) + (5.4 - 2.0) * (2.0 - 1.0) + (5.4 - 4.0) * (3.0 - 2.0)
    assert t.hypervolume == pytest.approx(expected)
    assert t.dominated_by == ["t2", "t1"]   # t2: less error at equal speed; t1: better in both
    shares = t.shares.set_index(["factor", "level"])
    assert shares.loc[("mode", "a"), ["full_budget", "on_front"]].tolist() == [3, 3]
    assert shares.loc[("mode", "b"), ["full_budget", "on_front"]].tolist() == [2, 0]
    assert shares.loc[("mode", "a"), "share_of_front"] == 1.0
    text = " ".join(tradeoff_sentences(t, ["mode", "x"], ["ratio", "ratio"]))
    assert "3 of the 5 distinct configs" in text and "is **not** on the front" in text
    assert "ran more than once" not in text                 # no repeats here
    assert "error -67%" in text and "speed +0%" in text    # t2 (the least error) against the baseline: 1 vs 3, 1 vs 1


def test_a_baseline_on_the_front_is_said_to_be() -> None:
    run = _run([("base", "b", 2.0, 0.5, 0.5, 9), ("t1", "a", 2.0, 2.0, 2.0, 9)])
    t = trade_off(run, metrics=METRICS, modes=MODES, factors=FACTORS, bins={}, max_epochs=9, baseline_trial="base")
    assert set(t.front["trial_id"]) == {"base", "t1"} and t.dominated_by == []
    assert "is on the front" in " ".join(tradeoff_sentences(t, ["mode", "x"], ["interval"] * 2))


def _answer(run: RunTrials, baseline: str = "base") -> tuple:
    t = trade_off(run, metrics=METRICS, modes=MODES, factors=FACTORS, bins={}, max_epochs=9, baseline_trial=baseline)
    return t, " ".join(tradeoff_sentences(t, ["mode", "x"], ["ratio", "ratio"]))


def _sentence(text: str, start: str) -> str:
    return text[text.index(start):].split(". ")[0]


def test_a_repeated_config_is_one_front_member_at_its_mean() -> None:
    # RUN's configs, with t1's config run three times (values around its own) and t2's twice (the same values):
    # 8 trials, 5 distinct configs, a front of 3 configs (counted per trial it would have 6 rows).
    run = _run([
        ("base", "b", 2.0, 3.0, 1.0, 9),
        ("t1", "a", 2.0, 2.0, 2.0, 9),
        ("t2", "a", 1.0, 1.0, 1.0, 9),
        ("t1r", "a", 2.0, 2.2, 2.2, 9),          # a repeat of t1, on the front per trial
        ("t3", "a", 3.0, 4.0, 3.0, 9),
        ("t1s", "a", 2.0 + 1e-14, 1.8, 1.8, 9),  # t1 again (equal after rounding to 12 digits)
        ("t4", "b", 3.0, 5.0, 2.5, 9),
        ("t2r", "a", 1.0, 1.0, 1.0, 9),          # a copy of t2
    ])
    t, text = _answer(run)
    assert list(t.front["trial_id"]) == ["t2", "t1", "t3"]
    assert t.front["trials_merged"].tolist() == [2, 3, 1]
    assert t.front["error"].tolist() == pytest.approx([1.0, 2.0, 4.0]) and t.front["speed"].tolist() == pytest.approx([1.0, 2.0, 3.0])
    assert len(t.points) == 5 and t.trials is not None and len(t.trials) == 8
    assert t.trials.set_index("trial_id")["config"].to_dict()["t1s"] == "t1"
    # the same configs at the same means as RUN: the same reference and hypervolume
    assert t.reference == pytest.approx([5.4, 0.8])
    assert t.hypervolume == pytest.approx((5.4 - 1.0) * 0.2 + (5.4 - 2.0) * 1.0 + (5.4 - 4.0) * 1.0)
    assert t.dominated_by == ["t2", "t1"]
    shares = t.shares.set_index(["factor", "level"])
    assert shares.loc[("mode", "a"), ["full_budget", "on_front"]].tolist() == [3, 3]
    assert shares.loc[("mode", "b"), ["full_budget", "on_front"]].tolist() == [2, 0]
    assert "3 of the 5 distinct configs" in text and "(8 trials: 2 config(s) ran more than once" in text
    assert "2 front config(s) beat it" in text
    assert "mode = a (3 of 3 front configs; 100% of its 3 full-budget configs)" in text
    ends = _sentence(text, "The front's ends")
    assert "trial t2, best error (mode=a, x=1): error 1, speed 1 (mean of 2 trials)" in ends
    assert "trial t3, best speed (mode=a, x=3)" in ends and ends.count("trial ") == 2
    table = front_table(t, ["mode", "x"])
    assert list(table.columns[:3]) == ["trial_id", "baseline", "trials_merged"] and table["trials_merged"].sum() == 6
    caption = front_caption(t, 9)
    assert "the 3 of 5 distinct configs" in caption and "Repeats merged" in caption and "`trials_merged`" in caption


def test_the_fronts_ends_never_repeat_one_config() -> None:
    # one config, run twice, beats everything in both objectives: the front is that one config, the end of both
    run = _run([("base", "b", 2.0, 3.0, 1.0, 9), ("t1", "a", 1.0, 0.5, 5.0, 9), ("t2", "a", 3.0, 4.0, 3.0, 9),
                ("t1r", "a", 1.0, 0.5, 5.0, 9)])
    t, text = _answer(run)
    assert list(t.front["trial_id"]) == ["t1"] and t.dominated_by == ["t1"]
    ends = _sentence(text, "The front's ends")
    assert ends.count("mode=a, x=1") == 1 and ends.count("trial t1") == 1
    assert "trial t1, best error and speed (mode=a, x=1): error 0.5, speed 5" in ends
    assert "1 of the 3 distinct configs" in text and "1 front config(s) beat it" in text
    # the baseline's own repeats are merged too, and it keeps its id
    run = _run([("base", "b", 2.0, 0.4, 1.0, 9), ("t1", "a", 1.0, 0.5, 5.0, 9), ("baser", "b", 2.0, 0.6, 1.2, 9)])
    t, text = _answer(run)
    assert t.baseline is not None and t.baseline["trial_id"] == "base" and t.baseline["trials_merged"] == 2
    assert t.baseline["error"] == pytest.approx(0.5) and t.dominated_by == ["t1"]   # (0.5, 5) beats (0.5, 1.1)
    assert "(mean of its 2 trials)" in text


def test_an_objective_constant_over_every_trial_is_a_tie_and_said_to_be() -> None:
    # speed is 0.5 up to float rounding (a probe that recognised nothing): only error decides, the front is t1
    # (compared raw, t3's speed 0.5 + 3e-13 would put it on the front beside t1)
    run = _run([("base", "b", 2.0, 3.0, 0.5, 9), ("t1", "a", 2.0, 1.0, 0.5 - 1e-13, 9),
                ("t2", "a", 1.0, 2.0, 0.5 + 2e-13, 9), ("t3", "a", 3.0, 4.0, 0.5 + 3e-13, 9)])
    t, text = _answer(run)
    assert list(t.front["trial_id"]) == ["t1"] and t.constant == ["speed"] and t.compared == ["error"]
    assert t.dominated_by == ["t1"]                      # better error, the same speed
    # one objective compared: the front is its best config, and there is no hypervolume (nor a reference)
    assert math.isnan(t.hypervolume) and np.isnan(t.reference).all()
    assert "1 of the 4 distinct configs" in text and "the config(s) best in error (no trade-off, no hypervolume)" in text
    assert ("speed is the same in every full-budget trial (0.5): left out of dominance and the hypervolume "
            "(its values in the 4 trials differ by float rounding at most") in text
    assert text.count("0.5") == 1 and "speed" not in text.replace("speed is the same", "").split("higher is better)")[1]
    assert not re.search(r"\bnan\b", text + front_caption(t, 9))
    assert "beat it in error" in text
    ends = _sentence(text, "The front: ")
    assert ends == "The front: trial t1, best error (mode=a, x=2): error 1, against the baseline error -67%"
    assert list(front_table(t, ["mode", "x"]).columns) == ["trial_id", "baseline", "trials_merged", "error", "mode", "x"]
    # a genuine difference is kept: the same run with speeds 1e-6 apart has the trade-off front
    run = _run([("base", "b", 2.0, 3.0, 0.5, 9), ("t1", "a", 2.0, 1.0, 0.5 - 1e-6, 9),
                ("t2", "a", 1.0, 2.0, 0.5 + 2e-6, 9), ("t3", "a", 3.0, 4.0, 0.5 + 3e-6, 9)])
    t, text = _answer(run)
    assert list(t.front["trial_id"]) == ["t1", "t2", "t3"] and t.constant == [] and "constant" not in text


METRICS3, MODES3 = ["error", "speed", "probe"], ["min", "max", "max"]
SIXTH = 1 / 6


def _run3(rows: list[tuple[str, str, float, float, float, float]]) -> RunTrials:
    """(trial_id, mode, x, error, speed, probe), every trial at the full budget (9 epochs), the same values at each."""
    trials, history = [], []
    for n, (tid, mode, x, err, speed, probe) in enumerate(rows):
        trials.append({"trial_id": tid, "status": "complete", "epochs": 9, "mode": mode, "x": x, "optuna_number": n,
                       "last_error": err})
        history += [{"trial_id": tid, "epoch": e, "error": err, "speed": speed, "probe": probe} for e in range(1, 10)]
    return RunTrials(pd.DataFrame(trials), pd.DataFrame(history), ["mode", "x"])


# RUN's full-budget configs with a third objective, a probe that recognised nothing: 1/6 give or take 1e-13.
# Compared raw, t4's probe (the highest) would put it on the front although t3 beats it in error and speed,
# and the hypervolume would be a thin slab 1e-13 deep.
RUN3 = _run3([
    ("base", "b", 2.0, 3.0, 1.0, SIXTH),
    ("t1", "a", 2.0, 2.0, 2.0, SIXTH - 1e-13),
    ("t2", "a", 1.0, 1.0, 1.0, SIXTH + 1e-13),
    ("t3", "a", 3.0, 4.0, 3.0, SIXTH - 2e-13),
    ("t4", "b", 3.0, 5.0, 2.5, SIXTH + 3e-13),
])


def _answer3(run: RunTrials) -> tuple:
    t = trade_off(run, metrics=METRICS3, modes=MODES3, factors=FACTORS, bins={}, max_epochs=9, baseline_trial="base")
    return t, " ".join(tradeoff_sentences(t, ["mode", "x"], ["ratio"] * 3))


def test_a_constant_objective_with_float_noise_is_left_out_of_dominance_and_the_hypervolume() -> None:
    t, text = _answer3(RUN3)
    assert t.constant == ["probe"] and t.compared == ["error", "speed"]
    # the front, order, baseline verdict and hypervolume of the two objectives compared, exactly as for RUN
    assert list(t.front["trial_id"]) == ["t2", "t1", "t3"] and t.dominated_by == ["t2", "t1"]
    assert t.reference[:2] == pytest.approx([5.4, 0.8]) and math.isnan(t.reference[2])
    by_hand = (5.4 - 1.0) * (1.0 - 0.8) + (5.4 - 2.0) * (2.0 - 1.0) + (5.4 - 4.0) * (3.0 - 2.0)   # 5.68
    assert t.hypervolume == pytest.approx(by_hand)
    # named once, with its value and why, and nowhere else: no 1e-13 change, no probe in the ends or the baseline
    line = ("probe is the same in every full-budget trial (0.1667): left out of dominance and the hypervolume (its "
            "values in the 5 trials differ by float rounding at most, less than 1e-09 of their magnitude, so it "
            "separates no config).")
    assert line in tradeoff_sentences(t, ["mode", "x"], ["ratio"] * 3)
    assert text.count("probe") == 2 and text.count("0.1667") == 1         # the directions, and its one line
    assert "e-13" not in text and "e-14" not in text and "hypervolume 5.68)" in text
    assert "front config(s) beat it in every objective compared" in text
    ends = _sentence(text, "The front's ends")
    assert ends.count("trial ") == 2 and "trial t2, best error (" in ends and "trial t3, best speed (" in ends
    caption = front_caption(t, 9)
    assert "Hypervolume of the front 5.68 (over error and speed)" in caption and "probe = " not in caption
    assert "reference point (error = 5.4, speed = 0.8)" in caption and caption.count("0.1667") == 1
    assert "probe" not in front_table(t, ["mode", "x"]).columns


def test_the_fronts_ends_name_each_config_once_with_every_objective_it_is_best_in() -> None:
    # t1 is best in error and in probe, t3 in speed: two ends, t1's naming both
    run = _run3([("base", "b", 2.0, 3.0, 1.0, 0.2), ("t1", "a", 2.0, 1.0, 2.0, 0.9), ("t2", "a", 1.0, 2.0, 2.5, 0.5),
                 ("t3", "a", 3.0, 4.0, 3.0, 0.1)])
    t, text = _answer3(run)
    assert t.constant == [] and list(t.front["trial_id"]) == ["t1", "t2", "t3"]
    ends = _sentence(text, "The front's ends")
    assert ends.count("trial t1") == 1 and ends.count("trial t3") == 1 and "trial t2" not in ends
    assert "trial t1, best error and probe (mode=a, x=2): error 1, speed 2, probe 0.9" in ends
    assert "trial t3, best speed (mode=a, x=3)" in ends
    # one config best in all three: one end
    run = _run3([("base", "b", 2.0, 3.0, 1.0, 0.2), ("t1", "a", 2.0, 1.0, 4.0, 0.9), ("t2", "a", 1.0, 2.0, 2.5, 0.5)])
    t, text = _answer3(run)
    ends = _sentence(text, "The front's ends")
    assert ends.startswith("The front's ends: trial t1, best error, speed and probe (mode=a, x=2)")
    assert ends.count("trial ") == 1


def test_every_objective_constant_is_no_front() -> None:
    run = _run3([("base", "b", 2.0, 3.0, 1.0, SIXTH), ("t1", "a", 2.0, 3.0 + 1e-15, 1.0, SIXTH - 1e-13),
                 ("t2", "a", 1.0, 3.0, 1.0 - 1e-15, SIXTH + 1e-13)])
    t, text = _answer3(run)
    assert t.constant == METRICS3 and t.compared == [] and math.isnan(t.hypervolume)
    assert len(t.front) == 3 and t.dominated_by == []
    assert "tie: every objective is the same in every one of them" in text
    assert all(f"{m} is the same in every full-budget trial" in text for m in METRICS3)
    assert "every config is listed" in front_caption(t, 9)


def test_the_front_confirmation_plan_spreads_along_the_front() -> None:
    plan = plan_front_confirmation(RUN, params=FACTORS, metrics=METRICS, modes=MODES, baseline={"mode": "b", "x": 2.0},
                                   max_epochs=9, top_k=2, seeds=3)
    labels = [c["label"] for c in plan["configs"]]
    assert labels == ["front1", "front2", BASELINE_LABEL]
    # the two ends of the front (infinite crowding distance) come first
    assert {c["trial_id"] for c in plan["configs"][:2]} == {"t2", "t3"}
    assert plan["front"] and all(c["seeds"] == 3 for c in plan["configs"])


def _designed(tmp_path: Path, runs: dict[str, list[tuple[float, float]]]) -> Path:
    """A run folder whose designed stage ran ``runs``: label -> (error, speed) per seed."""
    folder = RunFolder(tmp_path)
    folder.designed.mkdir(parents=True)
    configs = [{"label": label, "params": {"x": float(i)}, "roles": ["confirm"], "seeds": len(v)}
               for i, (label, v) in enumerate(runs.items())]
    folder.candidates.write_text(json.dumps({"configs": configs, "front": True, "confirm": True, "leave_one_out": False,
                                             "seeds": 3, "max_epochs": 2}))
    for label, values in runs.items():
        for seed, (err, speed) in enumerate(values):
            d = folder.designed / f"{label}_{seed}"
            d.mkdir()
            (d / "params.json").write_text(json.dumps({"confirm_label": label, "seed": seed}))
            (d / "result.json").write_text("\n".join(json.dumps({"epoch": e, "error": err, "speed": speed}) for e in (1, 2)))
    return tmp_path


def test_front_confirmation_is_paired_and_holm_corrected(tmp_path: Path) -> None:
    # front1 is better than the baseline by exactly 0.1 error in every seed, although the seeds differ by far more:
    # paired, that is certain; unpaired it would not be significant.
    run_dir = _designed(tmp_path, {
        "front1": [(1.0, 2.0), (3.0, 2.1), (5.0, 1.9)],
        "front2": [(1.2, 5.0), (3.3, 5.1), (4.9, 4.8)],
        BASELINE_LABEL: [(1.1, 1.0), (3.1, 1.05), (5.1, 0.95)],
    })
    c = load_front_confirmation(run_dir, metrics=METRICS, modes=MODES)
    assert c is not None and c.summary is not None
    s = c.summary.set_index("config")
    assert s.loc["front1", "error delta"] == pytest.approx(-0.1)
    assert s.loc["front1", "error p"] < 1e-6              # paired: the same difference in every seed
    from scipy import stats

    unpaired = stats.ttest_ind([1.0, 3.0, 5.0], [1.1, 3.1, 5.1]).pvalue
    assert unpaired > 0.5
    # Holm over the 4 comparisons (2 configs x 2 objectives)
    ps = [s.loc[c_, f"{m} p"] for c_ in ("front1", "front2") for m in METRICS]
    order = np.argsort(ps)
    adjusted = np.maximum.accumulate([min(1.0, (4 - k) * ps[i]) for k, i in enumerate(order)])
    for k, i in enumerate(order):
        c_, m = [("front1", "error"), ("front1", "speed"), ("front2", "error"), ("front2", "speed")][i]
        assert s.loc[c_, f"{m} p_holm"] == pytest.approx(adjusted[k])
    # the baseline's means (3.1, 1.0) are beaten by front1's (3.0, 2.0): off the confirmed front
    assert bool(s.loc["front1", "on_front"]) and bool(s.loc["front2", "on_front"])
    assert not bool(s.loc[BASELINE_LABEL, "on_front"])
    assert "front1" in c.sentence and "beats the baseline in every objective" in c.sentence
    assert math.isnan(s.loc[BASELINE_LABEL, "error delta"])


def test_a_baseline_that_is_a_front_config_is_compared_under_its_front_label(tmp_path: Path) -> None:
    run_dir = _designed(tmp_path, {"front1": [(1.0, 2.0), (1.1, 2.1)], "front2": [(2.0, 1.0), (2.1, 1.1)]})
    cand = json.loads(RunFolder(run_dir).candidates.read_text())
    cand["configs"][1]["aliases"] = [BASELINE_LABEL]     # as _merge_identical leaves it
    RunFolder(run_dir).candidates.write_text(json.dumps(cand))
    c = load_front_confirmation(run_dir, metrics=METRICS, modes=MODES)
    assert c is not None and c.summary is not None
    s = c.summary.set_index("config")
    assert list(s.index) == ["front1", "front2 = baseline"]
    assert s.loc["front1", "error delta"] == pytest.approx(-1.0) and s.loc["front1", "speed delta"] == pytest.approx(1.0)
    assert "the baseline is a front config itself" in c.sentence and "front1 (x=0) beats the baseline in every objective" in c.sentence
