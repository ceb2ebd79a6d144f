"""Secondary metrics (the spec's ``report:``, issue 32 item 4): their columns in
the confirmation and leave-one-out tables, Holm-corrected within each metric,
the answer's clause per metric for the best config, and the line for a metric
the trials did not report. Values are chosen so every number is known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from studies import driver
from studies.report.ablation import holm
from studies.report.answer import confirmation_claims, leave_one_out_claims, short_answer
from studies.report.confirmation import leave_one_out, load_confirmation
from studies.runs.run_folder import RunFolder
from studies.spec.study import Secondary
from tests.studies.report.test_latex import compile_problems, needs_pdflatex
from tests.studies.report.test_report_files import CONFIRM_SEEDS, CONFIRM_VALUES, write_confirmation, write_run_folder

# Final val_kp_mse per config and seed. top1 - baseline: -0.10, -0.09, -0.09 (mean -0.09333, 19% of 0.5);
# top2 - baseline: 0, +0.01, -0.01 (mean 0, p = 1).
KP_VALUES = {"top1": [0.40, 0.43, 0.39], "top2": [0.50, 0.53, 0.47], "baseline": [0.50, 0.52, 0.48]}
KP = [Secondary("val_kp_mse", "min")]


def add_secondary(run_dir: Path, metric: str, values: dict[str, list[float]]) -> None:
    """Every designed trial of write_confirmation also reports ``metric``, at its
    last epoch the value of ``values`` for its config and seed (earlier epochs: +0.1)."""
    for trial in sorted((run_dir / "designed").glob("trial_*")):
        params = json.loads((trial / "params.json").read_text())
        final = values[params["confirm_label"]][CONFIRM_SEEDS.index(params["seed"])]
        lines = [json.loads(x) for x in (trial / "result.json").read_text().splitlines()]
        last = max(r["epoch"] for r in lines)
        for r in lines:
            r[metric] = final if r["epoch"] == last else final + 0.1
        (trial / "result.json").write_text("\n".join(json.dumps(r) for r in lines) + "\n")


def _p(label: str, values: dict[str, list[float]]) -> float:
    return float(stats.ttest_rel(values[label], values["baseline"]).pvalue)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the bundled mdn_ramp spec (report: val_kp_mse, val_emotion_mse, val_nll) whose designed trials
    report val_mse and val_kp_mse only, reported once."""
    run = tmp_path_factory.mktemp("results") / "mdn_ramp" / "20250101-000000"
    write_run_folder(run)
    write_confirmation(run)
    add_secondary(run, "val_kp_mse", KP_VALUES)
    driver.write_outputs(run, driver.spec_of_run(run))
    return run


def test_secondary_columns_hold_the_means_and_paired_deltas(tmp_path: Path) -> None:
    write_confirmation(tmp_path)
    add_secondary(tmp_path, "val_kp_mse", KP_VALUES)
    res = load_confirmation(tmp_path, metric="val_mse", mode="min", report=KP)
    assert res is not None and res.summary is not None and res.secondary == KP and res.missing == []
    s = res.summary.set_index("config")
    for label, vs in KP_VALUES.items():
        assert s.loc[label, "val_kp_mse mean"] == pytest.approx(sum(vs) / 3)
    assert s.loc["top1", "val_kp_mse delta"] == pytest.approx(-0.28 / 3)
    assert s.loc["top2", "val_kp_mse delta"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(s.loc["baseline", "val_kp_mse delta"]) and math.isnan(s.loc["baseline", "val_kp_mse p_holm"])
    diff = [a - b for a, b in zip(KP_VALUES["top1"], KP_VALUES["baseline"])]
    half = stats.t.ppf(0.975, 2) * stats.tstd(diff) / math.sqrt(3)
    assert (s.loc["top1", "val_kp_mse delta_lo"], s.loc["top1", "val_kp_mse delta_hi"]) == pytest.approx(
        (-0.28 / 3 - half, -0.28 / 3 + half))
    # The study metric's columns are what they were without report:.
    plain = load_confirmation(tmp_path, metric="val_mse", mode="min", report=[])
    assert plain is not None and plain.summary is not None
    pd.testing.assert_frame_equal(res.summary[plain.summary.columns], plain.summary)
    assert res.caption.startswith(plain.caption) and "Holm-corrected within that metric's column, separately from " \
                                                     "val_mse's" in res.caption


def test_holm_is_within_each_metric_not_over_both(tmp_path: Path) -> None:
    write_confirmation(tmp_path)
    add_secondary(tmp_path, "val_kp_mse", KP_VALUES)
    s = load_confirmation(tmp_path, metric="val_mse", mode="min", report=KP).summary.set_index("config")
    kp = [_p("top1", KP_VALUES), _p("top2", KP_VALUES)]
    mse = [_p("top1", CONFIRM_VALUES), _p("top2", CONFIRM_VALUES)]
    assert [s.loc["top1", "val_kp_mse p_holm"], s.loc["top2", "val_kp_mse p_holm"]] == pytest.approx(holm(kp))
    assert [s.loc["top1", "p_holm"], s.loc["top2", "p_holm"]] == pytest.approx(holm(mse))
    pooled = holm(kp + mse)[:2]
    assert s.loc["top1", "val_kp_mse p_holm"] != pytest.approx(pooled[0])   # 2x the raw p, not 4x (or 3x)
    assert s.loc["top1", "val_kp_mse p_holm"] == pytest.approx(2 * kp[0]) and s.loc["top1", "val_kp_mse sig"] == "**"
    assert s.loc["top2", "val_kp_mse p_holm"] == pytest.approx(1.0) and s.loc["top2", "val_kp_mse sig"] == ""


def test_the_answer_has_a_clause_per_secondary_metric_for_the_best_config(tmp_path: Path) -> None:
    write_confirmation(tmp_path)
    add_secondary(tmp_path, "val_kp_mse", KP_VALUES)
    res = load_confirmation(tmp_path, metric="val_mse", mode="min", report=[*KP, Secondary("val_nll", "min")])
    assert res is not None and res.missing == ["val_nll: not reported by the trials"]
    claims = confirmation_claims(res, metric="val_mse", mode="min", scale="ratio", max_epochs=18)
    assert [c.level for c in claims] == ["top1", "top1", "top2"]   # top1's own, its val_kp_mse clause, top2's
    kp = claims[1]
    s = res.summary.set_index("config")
    lo, hi = s.loc["top1", "val_kp_mse delta_lo"], s.loc["top1", "val_kp_mse delta_hi"]
    p_holm = 2 * _p("top1", KP_VALUES)
    assert 0.001 <= p_holm < 0.01
    assert kp.text == (f"on val_kp_mse, better: -0.0933 (-19%), 95% t-interval before Holm [{lo:.3g}, {hi:.3g}], "
                       f"p_holm {p_holm:.3f} **")
    assert (kp.kind, kp.evidence, kp.direction, kp.mark, kp.extra["metric"]) == (
        "difference", "designed: confirmation", "better", "**", "val_kp_mse")
    assert kp.estimate == pytest.approx(-0.28 / 3)
    assert not any("val_nll" in c.text for c in claims)


def test_a_secondary_clause_without_significance_has_no_mark(tmp_path: Path) -> None:
    values = {"top1": [0.50, 0.53, 0.47], "top2": [0.50, 0.53, 0.47], "baseline": [0.50, 0.52, 0.48]}
    write_confirmation(tmp_path)
    add_secondary(tmp_path, "val_kp_mse", values)
    res = load_confirmation(tmp_path, metric="val_mse", mode="min", report=KP)
    kp = confirmation_claims(res, metric="val_mse", mode="min", scale="interval", max_epochs=18)[1]
    assert kp.kind == "no_difference" and kp.mark == ""
    assert kp.text.startswith("on val_kp_mse: +") and "(" not in kp.text   # an interval-scale metric: no percent
    assert kp.text.endswith(", 95% t-interval before Holm [-0.0248, 0.0248], p_holm 1.000, no significant difference")


def test_leave_one_out_gets_the_secondary_columns_and_the_missing_line() -> None:
    configs = [{"label": "best", "params": {"shape": "linear", "lr": 0.001}, "roles": ["loo_best"]},
               {"label": "loo_shape", "params": {"shape": "constant", "lr": 0.001}, "factors": ["shape"]},
               {"label": "loo_lr", "params": {"shape": "linear", "lr": 0.003}, "factors": ["lr"]}]
    loss = {"best": [1.0, 1.1, 0.9], "loo_shape": [1.3, 1.4, 1.2], "loo_lr": [1.01, 1.12, 0.9]}
    acc = {"best": [0.80, 0.82, 0.84], "loo_shape": [0.70, 0.73, 0.74], "loo_lr": [0.80, 0.82, 0.84]}
    runs = pd.DataFrame([{"config": c, "seed": s, "loss": loss[c][i], "acc": acc[c][i], "epochs": 18}
                         for c in loss for i, s in enumerate((0, 1, 2))])
    plan = {"configs": configs, "loo_seeds": 3, "max_epochs": 18}
    res = leave_one_out(plan, runs, metric="loss", mode="min",
                        report=[Secondary("acc", "max"), Secondary("val_nll", "min")])
    assert res.secondary == [Secondary("acc", "max")] and res.missing == ["val_nll: not reported by the trials"]
    t = res.table.set_index("factor")
    assert t.loc["shape", "acc mean"] == pytest.approx(2.17 / 3)
    assert t.loc["shape", "acc delta"] == pytest.approx(-0.29 / 3)         # variant minus best
    assert t.loc["lr", "acc delta"] == 0.0 and t.loc["lr", "acc p_holm"] == 1.0
    p_shape = stats.ttest_rel(acc["loo_shape"], acc["best"]).pvalue
    assert t.loc["shape", "acc p_holm"] == pytest.approx(2 * p_shape)       # Holm over acc's two rows
    plain = leave_one_out(plan, runs, metric="loss", mode="min")
    pd.testing.assert_frame_equal(res.table[plain.table.columns], plain.table)
    assert "variant minus best in that metric" in res.caption and "separately from loss's" in res.caption


def test_the_leave_one_out_answer_has_a_clause_per_secondary_metric() -> None:
    """shape: the best's linear beats constant on loss and on acc (acc: best minus variant +0.0967, marked);
    lr: no difference in either. The clause says best minus variant in each metric; the short answer and
    the factor's status stay on the study metric."""
    configs = [{"label": "best", "params": {"shape": "linear", "lr": 0.001}, "roles": ["loo_best"]},
               {"label": "loo_shape", "params": {"shape": "constant", "lr": 0.001}, "factors": ["shape"]},
               {"label": "loo_lr", "params": {"shape": "linear", "lr": 0.003}, "factors": ["lr"]}]
    loss = {"best": [1.0, 1.1, 0.9], "loo_shape": [1.01, 1.12, 0.9], "loo_lr": [1.01, 1.12, 0.9]}
    acc = {"best": [0.80, 0.82, 0.84], "loo_shape": [0.70, 0.73, 0.74], "loo_lr": [0.80, 0.82, 0.84]}
    runs = pd.DataFrame([{"config": c, "seed": s, "loss": loss[c][i], "acc": acc[c][i], "epochs": 18}
                         for c in loss for i, s in enumerate((0, 1, 2))])
    res = leave_one_out({"configs": configs, "loo_seeds": 3, "max_epochs": 18}, runs, metric="loss", mode="min",
                        report=[Secondary("acc", "max")])
    shape = leave_one_out_claims(res, "shape", metric="loss", mode="min", scale="interval", max_epochs=18)
    assert [c.kind for c in shape] == ["no_difference", "difference"]
    acc_claim = shape[1]
    t = res.table.set_index("factor")
    assert (acc_claim.level, acc_claim.reference, acc_claim.direction, acc_claim.extra["metric"]) == (
        "linear", "constant", "better", "acc")
    assert acc_claim.estimate == pytest.approx(0.29 / 3) and acc_claim.mark == t.loc["shape", "acc sig"] != ""
    assert acc_claim.lo == pytest.approx(-t.loc["shape", "acc delta_hi"])
    assert acc_claim.text.startswith("on acc, linear is better: +0.0967, 95% t-interval before Holm [")
    lr = leave_one_out_claims(res, "lr", metric="loss", mode="min", scale="interval", max_epochs=18)
    assert [c.kind for c in lr] == ["no_difference", "no_difference"]
    assert lr[1].text.startswith("on acc: ") and lr[1].text.endswith("no significant difference")
    # the short answer is about the study metric: a secondary metric's difference does not answer the factor
    line = next(x for x in short_answer(shape, metric="loss", mode="min", question=["shape"]) if "**shape**" in x)
    assert "not answered" in line


# --------------------------------------------------------------- the written report

def test_the_report_shows_the_secondary_columns_the_clause_and_the_missing_lines(run_dir: Path) -> None:
    table = pd.read_csv(run_dir / "tables" / "confirmation.csv").set_index("config")
    assert table.loc["top1", "val_kp_mse delta"] == pytest.approx(-0.28 / 3)
    assert not any(c.startswith(("val_nll", "val_emotion_mse")) for c in table.columns)
    md = (run_dir / "tables" / "confirmation.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| config"))
    assert [h.strip() for h in header.strip("|").split("|")][-4:] == [
        "val_kp_mse mean", "val_kp_mse delta", "val_kp_mse p_holm", "val_kp_mse sig"]
    row = next(line for line in md.splitlines() if line.startswith("| top1"))
    assert "| -0.09333 [" in row and "| **" in row
    report = RunFolder(run_dir).report.read_text()
    section = report.split("## Confirmation (designed)")[1].split("\n## ")[0]
    assert "val_emotion_mse: not reported by the trials." in section and "val_nll: not reported by the trials." in section
    answer = next(line for line in report.splitlines() if "**Designed, confirmation**" in line)
    assert "**; on val_kp_mse, better: -0.0933 (-19%), 95% t-interval before Holm [" in answer
    assert "val_nll" not in answer and "val_emotion_mse" not in answer


@needs_pdflatex
def test_the_confirmation_table_with_secondary_columns_compiles(run_dir: Path, tmp_path: Path) -> None:
    tex = run_dir / "tables" / "confirmation.tex"
    assert "val\\_kp\\_mse" in tex.read_text()
    assert compile_problems(tex, tmp_path) == []
