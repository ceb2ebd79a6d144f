"""The Methods paragraph: every number in it is the run's own (known-truth run folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studies import driver
from studies.report.budget import budget_table
from studies.report.confirmation import load_confirmation
from studies.report.methods import methods_paragraph
from studies.runs.run_folder import RunFolder
from tests.studies.report.test_report_files import CONFIRM_SEEDS, GRACE, MAX_EPOCHS, RF, write_confirmation, write_run_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("results") / "mdn_ramp" / "r"
    write_run_folder(run_dir)
    write_confirmation(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    info["platform"] = {"version": "0.9", "commit": "0123456789abcdef0123", "dirty": True}
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


def test_the_paragraph_says_the_runs_own_numbers(run: Path) -> None:
    spec = driver.spec_of_run(run)
    trials = driver.read_trials(RunFolder(run), spec)
    info = RunFolder(run).info()
    budget = budget_table(trials, run, info)
    text = methods_paragraph(spec, info, trials, budget=budget,
                             confirmation=load_confirmation(run, metric="val_mse", mode="min"))
    full = int((trials.trials["status"] == "complete").sum())
    assert f"{len(trials.trials)} trials ({spec.budget.num_samples} asked for)" in text
    assert f"grace period {GRACE} epochs, reduction factor {RF:g}, at most {MAX_EPOCHS} epochs" in text
    assert "decisions at epochs 2, 6" in text   # grace 2, factor 3, max 18: Ray decides at 2, 6 (18 is the end)
    assert f"{full} of {len(trials.trials)} trials ran the full budget" in text
    assert f"the 2 best configs of the search and the baseline were re-run at the full budget over {len(CONFIRM_SEEDS)} seeds" in text
    assert "paired t-test, Holm-corrected" in text
    cpu = budget.set_index(budget.columns[0]).loc["CPU-hours, all stages"].iloc[0]
    assert f"Compute: {cpu} CPU-hours" in text
    assert "commit 0123456789ab with uncommitted changes" in text and "raystudies 0.9" in text
    assert "the family's bundled synthetic data" in text
    assert f"seed {spec.search.seed}; the reference config first, then a balanced screening design" in text and "TPE" in text


def test_pinned_parameters_are_named_in_the_answer_and_the_methods(run: Path, tmp_path: Path) -> None:
    import shutil
    from dataclasses import replace

    copy = tmp_path / "mdn_ramp" / "pinned"
    shutil.copytree(run, copy)
    spec = replace(driver.spec_of_run(copy), fixed={"lr": 0.002, "ramp_shape": "linear"})
    driver.write_outputs(copy, spec)
    text = (copy / "tables" / "ablation.md").read_text()
    assert "- **Pinned for this run** (`--fix`): lr = 0.002, ramp_shape = linear; not searched, so not answered." in text
    assert "(lr fixed at 0.002, ramp_shape fixed at linear, with --fix)" in text.split("## Methods")[1]
