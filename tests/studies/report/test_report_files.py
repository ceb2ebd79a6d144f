"""The Ray-free report on a synthetic run folder: the files Ray Tune would have
written (trial_*/params.json, trial_*/result.json, error.txt), run.json and the
spec copies, turned into tables/ and plots/ by studies.driver.write_outputs."""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studies import driver
from studies.errors import UserError
from studies.runs.trials import STATUS_FAILED, load_trials
from studies.spec.study import SEARCH_SPACES_DIR, STUDIES_DIR

MAX_EPOCHS, GRACE, RF = 18, 2, 3
SHAPES = ["constant", "step", "linear", "exponential"]
RAMPED = {"step", "linear", "exponential"}
LENGTHED = {"linear", "exponential"}
# True effect of each ramp shape on val_mse (lower is better): `linear` is best.
SHAPE_EFFECT = {"constant": 0.0, "step": -0.02, "linear": -0.30, "exponential": -0.05}
SIGMA = 0.03
FAILED_ID = "f0000"
ERROR_TAIL = "core.training.NonFiniteLossError: non-finite train_loss=nan at epoch 3"
TRACEBACK = f"""Failure # 1 (occurred at 2025-01-01_00-00-00)
ray::ImplicitFunc.train() (pid=1234, ip=127.0.0.1, actor_id=abc)
Traceback (most recent call last):
  File "/work/main/trainables/mdn_motion.py", line 80, in train_mdn_motion
    history = fit(model, data, config, report=report)
  File "/work/main/core/training.py", line 120, in fit
    raise NonFiniteLossError(f"non-finite train_loss={{loss}} at epoch {{epoch}}")
{ERROR_TAIL}
"""


# --------------------------------------------------------------- writing a run folder

def _write_results(trial_dir: Path, trial_id: str, metric: str, values: list[float], *, t0: float = 1.7e9,
                   per_epoch_s: float = 2.0) -> None:
    lines = []
    for epoch, value in enumerate(values, start=1):
        lines.append(json.dumps({
            "trial_id": trial_id, "epoch": epoch, "training_iteration": epoch,
            "time_total_s": epoch * per_epoch_s, "time_this_iter_s": per_epoch_s,
            "timestamp": int(t0 + epoch * per_epoch_s), "train_loss": value * 1.1, metric: value,
        }))
    (trial_dir / "result.json").write_text("\n".join(lines) + ("\n" if lines else ""))


def _trial_config(params: dict, seed: int = 0) -> dict:
    """What Tune writes as params.json: the fixed trial config plus what Optuna sampled
    (inactive conditional parameters are absent)."""
    return {"num_sequences": 256, "d_model": 48, "max_epochs": MAX_EPOCHS, "seed": seed,
            "checkpoint_every": 3, "cpus_per_trial": 1.0, **params}


def _sample_params(rng: np.random.Generator, shape: str) -> dict:
    params = {"ramp_shape": shape}
    if shape in RAMPED:
        params["initial_weight"] = float(np.exp(rng.uniform(np.log(0.01), np.log(0.5))))
        params["ramp_start"] = float(rng.uniform(0.0, 0.5))
    if shape in LENGTHED:
        params["ramp_length"] = float(rng.uniform(0.1, 0.4))
    params["lr"] = float(np.exp(rng.uniform(np.log(3e-4), np.log(3e-3))))
    return params


def _curve(rng: np.random.Generator, shape: str, epochs: int) -> list[float]:
    return [1.0 + SHAPE_EFFECT[shape] + 0.5 / e + float(rng.normal(0, SIGMA)) for e in range(1, epochs + 1)]


def write_run_folder(run_dir: Path, *, seed: int = 0, per_shape: int = 6, with_failed: bool = True,
                     status: str = "finished") -> dict[str, int]:
    """A finished mdn_ramp run as Ray Tune leaves it; returns trial id -> epochs run.
    ASHA-like: every trial runs the grace period (2 epochs); the best third at
    epoch 2 go on to 6; the best third of those at epoch 6 run all 18."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True)
    shutil.copyfile(STUDIES_DIR / "mdn_ramp.yaml", run_dir / driver.SPEC_COPY)
    shutil.copyfile(SEARCH_SPACES_DIR / "mdn_ramp.yaml", run_dir / driver.SEARCH_SPACE_COPY)
    trials = []
    for i in range(per_shape * len(SHAPES)):
        shape = SHAPES[i % len(SHAPES)]
        trials.append({"id": f"{i:05d}", "params": _sample_params(rng, shape), "curve": _curve(rng, shape, MAX_EPOCHS)})
    survivors = sorted(trials, key=lambda t: t["curve"][GRACE - 1])[: len(trials) // RF]
    finalists = sorted(survivors, key=lambda t: t["curve"][GRACE * RF - 1])[: max(2, len(survivors) // RF)]
    epochs = {}
    for t in trials:
        t["epochs"] = MAX_EPOCHS if t in finalists else GRACE * RF if t in survivors else GRACE
        epochs[t["id"]] = t["epochs"]
    if with_failed:
        params = _sample_params(rng, "exponential")
        trials.append({"id": FAILED_ID, "params": params, "curve": _curve(rng, "exponential", 2), "epochs": 2})
        epochs[FAILED_ID] = 2
    for t in trials:
        trial_dir = run_dir / f"trial_{t['id']}"
        trial_dir.mkdir()
        (trial_dir / "params.json").write_text(json.dumps(_trial_config(t["params"]), indent=2))
        _write_results(trial_dir, t["id"], "val_mse", t["curve"][: t["epochs"]])
    if with_failed:
        (run_dir / f"trial_{FAILED_ID}" / "error.txt").write_text(TRACEBACK)
    write_run_json(run_dir, status=status, num_samples=len(trials))
    return epochs


def write_run_json(run_dir: Path, *, status: str = "finished", num_samples: int = 25) -> None:
    info = {
        "study": "mdn_ramp", "run": run_dir.name, "status": status, "started": 1.7e9,
        "invocation": {"study_file": str(STUDIES_DIR / "mdn_ramp.yaml"), "smoke": False, "overrides": [],
                       "data": None, "address": None},
        "metric": "val_mse", "mode": "min", "max_epochs": MAX_EPOCHS, "num_samples": num_samples,
        "params": ["ramp_shape", "initial_weight", "ramp_start", "ramp_length", "lr"],
        "resources": {"cpus_per_trial": 1.0, "gpus_per_trial": 0.0}, "max_concurrent": 2,
        "cluster": {"CPU": 2.0, "GPU": 0.0}, "git_commit": None, "host": "test", "wall_s": 600.0,
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))


CONFIRM_SEEDS = [1000, 1001, 1002]
# Final val_mse per config and seed: top1 beats the baseline on every seed, top2 on two of three.
CONFIRM_VALUES = {
    "top1": [0.70, 0.72, 0.71],
    "top2": [0.90, 0.99, 0.93],
    "baseline": [1.00, 0.98, 1.02],
}


def write_confirmation(run_dir: Path) -> None:
    """What studies.tune.designed_stage.run_designed_stage writes: candidates.json, then one Tune trial
    folder per (config, seed) under <run>/designed/."""
    folder = run_dir / "designed"
    folder.mkdir()
    configs = [
        {"label": "top1", "params": {"ramp_shape": "linear", "initial_weight": 0.1, "ramp_start": 0.2,
                                     "ramp_length": 0.3, "lr": 0.001}, "trial_id": "00002"},
        {"label": "top2", "params": {"ramp_shape": "step", "initial_weight": 0.05, "ramp_start": 0.1,
                                     "lr": 0.002}, "trial_id": "00001"},
        {"label": "baseline", "params": {"ramp_shape": "constant", "lr": 0.001}, "trial_id": None},
    ]
    (folder / "candidates.json").write_text(json.dumps(
        {"configs": configs, "seeds": len(CONFIRM_SEEDS), "seed_values": CONFIRM_SEEDS, "max_epochs": MAX_EPOCHS},
        indent=2))
    n = 0
    for c in configs:
        for seed, final in zip(CONFIRM_SEEDS, CONFIRM_VALUES[c["label"]]):
            trial_dir = folder / f"trial_c{n:04d}"
            trial_dir.mkdir()
            fill = {"initial_weight": 0.1, "ramp_start": 0.0, "ramp_length": 0.2}  # placeholders for inactive ones
            (trial_dir / "params.json").write_text(json.dumps(
                {**_trial_config({**fill, **c["params"]}, seed=seed), "confirm_label": c["label"]}))
            curve = [final + 0.3 / e - 0.3 / MAX_EPOCHS for e in range(1, MAX_EPOCHS + 1)]
            _write_results(trial_dir, f"c{n:04d}", "val_mse", curve)
            n += 1


def _outputs(run_dir: Path, factors: list[str]) -> list[str]:
    names = ["tables/trials.csv", "tables/trials.md", "tables/ablation.md", "tables/ablation.csv",
             "tables/importance.md", "tables/importance.csv", "tables/importance.tex",
             "tables/budget.md", "tables/budget.csv", "tables/budget.tex",
             "plots/factors.png", "plots/learning_curves.png", "plots/modelled.png", "plots/importance.png",
             "tables/modelled.csv", "tables/expected_best.md", "tables/expected_best.csv", "tables/expected_best.tex",
             "plots/expected_best.png"]
    names += [f"tables/modelled_{f}.{ext}" for f in factors for ext in ("md", "csv", "tex")]
    names += [f"tables/ablation_{f}.{ext}" for f in factors for ext in ("md", "csv", "tex")]
    return names


FACTORS = ["ramp_shape", "initial_weight", "ramp_start", "ramp_length", "lr"]


# --------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], list[Path]]:
    """One run folder with a confirmation stage, reported once (the plots make
    write_outputs take a few seconds, so every test reads this one)."""
    run_dir = tmp_path_factory.mktemp("results") / "mdn_ramp" / "20250101-000000"
    epochs = write_run_folder(run_dir)
    write_confirmation(run_dir)
    written = driver.write_outputs(run_dir, driver.spec_of_run(run_dir)).files
    return run_dir, epochs, written


# --------------------------------------------------------------- the report

def test_no_ray_imported(report) -> None:
    """--report is Ray-free and torch-free: rebuilding the report in a fresh
    interpreter imports neither (each costs seconds of start-up)."""
    run_dir = report[0]
    _in_a_fresh_interpreter("import sys; from pathlib import Path; from studies.driver import spec_of_run, write_outputs; "
                            f"d = Path({str(run_dir)!r}); write_outputs(d, spec_of_run(d, for_training=False)); "
                            "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'; "
                            "assert 'torch' not in sys.modules, 'torch imported'")


def test_what_the_driver_imports_while_ray_starts_never_imports_ray() -> None:
    """The driver imports these in a thread while ray.init runs in the main one: an
    import of Ray's in both threads at once could deadlock on Python's import locks."""
    from studies.driver import IMPORTED_WHILE_RAY_STARTS

    assert "studies.report.write" in IMPORTED_WHILE_RAY_STARTS
    _in_a_fresh_interpreter("import importlib, sys; "
                            f"[importlib.import_module(m) for m in {IMPORTED_WHILE_RAY_STARTS!r}]; "
                            "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'")


def _in_a_fresh_interpreter(code: str) -> str:
    """Run ``code`` with ``python -c`` from the repository root; its stdout."""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_every_output_exists(report) -> None:
    run_dir, _, written = report
    for name in _outputs(run_dir, FACTORS):
        path = run_dir / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert set(_outputs(run_dir, FACTORS)) <= {str(p.relative_to(run_dir)) for p in written}
    for png in (run_dir / "plots").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_ablation_md_opens_with_the_answer(report) -> None:
    run_dir, _, _ = report
    text = (run_dir / "tables" / "ablation.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "# mdn_ramp: ablation report"
    assert lines[1] == ""
    spec = driver.spec_of_run(run_dir)
    assert lines[2] == f"**Question.** {spec.description}"   # the question first, then the short answer
    short = text.split("\n\n")[2]
    # a reader takes the short answer in within a minute: one line per factor, from its strongest evidence
    assert short.startswith("**Short answer** (lower val_mse is better;") and len(short.split()) < 150, short
    assert "- **ramp_shape** (modelled, epoch 2): linear is better than constant (-0.304 **)." in short
    for factor in FACTORS[1:]:
        assert f"- **{factor}**: not answered (below: why, and what would answer it)." in short
    assert "- **Confirmed at the full budget over seeds** (designed): top1 is better than baseline (-0.29 **)." in short
    answer = text.split("\n\n")[3]
    assert answer.splitlines()[0] == "(lower val_mse is better)"
    assert len(answer.split()) < 420, len(answer.split())
    # Each claim names its evidence; the designed runs come first.
    assert answer.index("**Designed, confirmation**") < answer.index("**Importance**")
    assert "(epoch 2)" in answer          # the modelled rung: all 25 trials are there, 8 at epoch 6
    # Every factor of the study's question gets a line: answered (by which evidence) or not, and why.
    for factor in FACTORS:
        assert re.search(rf"^- \*\*{factor}\*\* \((answered|not answered)\) — ", answer, re.M), factor
    # The planted effect: linear beats constant by ~0.30, significant; a ratio-scale metric gets a percent.
    m = re.search(r"linear is better than constant \((-0\.\d+) \((-\d+)%\), Holm-level CI \[(-[\d.]+), (-[\d.]+)\] \*+\)",
                  answer)
    assert m, answer
    assert float(m.group(1)) == pytest.approx(SHAPE_EFFECT["linear"], abs=0.1)
    assert float(m.group(3)) <= float(m.group(1)) <= float(m.group(4)) < 0
    # "Best" is the value at the full budget, as Optuna holds it: the last epoch of a complete trial.
    trials = pd.read_csv(run_dir / "tables" / "trials.csv")
    full = trials[trials["epochs"] == MAX_EPOCHS]
    best_full = full["last_val_mse"].min()
    assert f"val_mse {best_full:.4g}" in answer and "at the full budget" in answer
    assert f"{trials['best_val_mse'].min():.4g}" not in answer.split("**Best search trial**")[1]
    assert "**ramp_shape** has the largest main effect" in answer
    order = ["## Confirmation (designed)", "## Modelled marginals", "## Observed", "## Parameter importance",
             "## Expected best versus the number of trials", "## Budget", "## Methods"]
    assert [text.index(s) for s in order] == sorted(text.index(s) for s in order)   # designed, modelled, observed, ...
    methods = text.split("## Methods\n\n")[1]
    assert methods.startswith("Configs were proposed by TPE") and "Designed runs:" in methods
    # short captions here, the full note in each table's own file
    for factor in FACTORS:
        assert f"Full note: `tables/modelled_{factor}.md`" in text and f"Full note: `tables/ablation_{factor}.md`" in text
        assert "as in fANOVA (Hutter et al., ICML 2014)" in (run_dir / "tables" / f"modelled_{factor}.md").read_text()
    assert "as in fANOVA (Hutter et al., ICML 2014)" not in text.split("## Methods")[0]
    for factor in FACTORS:
        assert f"### {factor}" in text


def test_modelled_tables_say_what_they_are(report) -> None:
    run_dir, _, _ = report
    long = pd.read_csv(run_dir / "tables" / "modelled.csv")
    assert set(long["factor"]) == set(FACTORS)
    shape = long[long["factor"] == "ramp_shape"].set_index("level")
    assert list(shape.index) == ["constant (ref)", "step", "linear", "exponential"]
    assert (shape["lo"] <= shape["marginal"] + 1e-12).all() and (shape["marginal"] <= shape["hi"] + 1e-12).all()
    # The marks and the difference intervals agree: marked iff the interval excludes 0 and no gate withheld it.
    for _, t in long.groupby("factor"):
        others = t[~t["level"].str.endswith("(ref)")]
        excludes = (others["delta_lo"] > 0) | (others["delta_hi"] < 0)
        kept = others["withheld"].fillna("") == ""
        assert ((others["sig"].fillna("") != "") == (excludes & kept)).all()
        assert ((others["p_holm"] < 0.05) == excludes).all()
    # Declared bins of the range, not of what was sampled; a conditional factor's table is bin against bin.
    iw = long[long["factor"] == "initial_weight"]
    assert iw["level"].tolist()[0] == "[0.01, 0.027) (ref)" and iw["level"].tolist()[-1].endswith(", 0.5]")
    md = (run_dir / "tables" / "modelled_ramp_shape.md").read_text()
    assert "modelled" in md and "Hutter et al., ICML 2014" in md and "declared space" in md
    obs = (run_dir / "tables" / "ablation_ramp_shape.md").read_text()
    assert "observed" in obs and "over-sample its favourite region" in obs


def test_ablation_tables_agree_with_the_data(report) -> None:
    run_dir, epochs, _ = report
    long = pd.read_csv(run_dir / "tables" / "ablation.csv")
    assert set(long["factor"]) == set(FACTORS)
    shape = long[long["factor"] == "ramp_shape"].set_index("level")
    assert shape["reference"].unique().tolist() == ["constant"]
    assert "constant (ref)" in shape.index
    assert shape.loc["constant (ref)", "trials"] == 6
    # Each factor's levels partition the trials (NOT_SAMPLED included).
    for factor, t in long.groupby("factor"):
        assert t["trials"].sum() == len(epochs), factor
        assert (t["at_rung"] <= t["trials"]).all()
    # The ramp knobs are not sampled for `constant`: 6 constant trials in "(not sampled)".
    iw = long[long["factor"] == "initial_weight"].set_index("level")
    not_sampled = [lv for lv in iw.index if lv.startswith("(not sampled)")]
    assert len(not_sampled) == 1 and iw.loc[not_sampled[0], "trials"] == 6
    # The baseline `constant` does not sample initial_weight: its bins are compared from the lowest one,
    # and "(not sampled)" is one more level (not the reference).
    assert not not_sampled[0].endswith("(ref)")
    assert iw.index[0] == "[0.01, 0.027) (ref)"
    for factor in FACTORS:
        per = pd.read_csv(run_dir / "tables" / f"ablation_{factor}.csv")
        assert len(per) == (long["factor"] == factor).sum()


def test_tex_tables(report) -> None:
    run_dir, _, _ = report
    for path in list((run_dir / "tables").glob("*.tex")):
        text = path.read_text()
        assert r"\begin{tabular}" in text and r"\end{tabular}" in text, path.name
        assert r"\caption{" in text


def test_failed_trial_in_trials_csv(report) -> None:
    run_dir, epochs, _ = report
    table = pd.read_csv(run_dir / "tables" / "trials.csv", dtype={"trial_id": str})
    assert len(table) == len(epochs)
    row = table.set_index("trial_id").loc[FAILED_ID]
    assert row["status"] == STATUS_FAILED
    assert row["error"] == ERROR_TAIL
    assert row["epochs"] == 2
    others = table[table["trial_id"] != FAILED_ID]
    assert others["error"].isna().all()
    assert (others["status"] != STATUS_FAILED).all()
    # Deepest rung first, then the last value (Optuna's); only full-budget trials are complete without an optuna.db.
    assert table["epochs"].is_monotonic_decreasing
    assert all(rows["last_val_mse"].dropna().is_monotonic_increasing for _, rows in table.groupby("epochs"))
    assert table.iloc[0]["last_val_mse"] == table.loc[table["epochs"] == MAX_EPOCHS, "last_val_mse"].min()
    assert set(table.loc[table["epochs"] == MAX_EPOCHS, "status"]) == {"complete"}
    # Conditional parameters stay blank where they were not sampled.
    constant = table[table["ramp_shape"] == "constant"]
    assert constant["initial_weight"].isna().all() and constant["ramp_length"].isna().all()
    md = (run_dir / "tables" / "trials.md").read_text()
    assert md.startswith(f"# Trials ({len(epochs)})") and ERROR_TAIL in md


def test_budget_table(report) -> None:
    run_dir, epochs, _ = report
    budget = pd.read_csv(run_dir / "tables" / "budget.csv").set_index("quantity")["value"]
    spent = sum(epochs.values())
    assert int(budget["trials"]) == len(epochs)
    assert int(budget["trial-epochs spent"]) == spent
    assert int(budget["trial-epochs without early stopping"]) == len(epochs) * MAX_EPOCHS
    assert budget["saved by ASHA"] == f"{(1 - spent / (len(epochs) * MAX_EPOCHS)) * 100:.1f}%"
    # 2 s per epoch in result.json's time_total_s.
    assert budget["trial time"] == f"{2.0 * spent / 60:.1f} min"
    assert budget["wall time"] == "10.0 min"
    assert "GPU-hours" not in budget.index


def test_importance_table(report) -> None:
    run_dir, _, _ = report
    imp = pd.read_csv(run_dir / "tables" / "importance.csv")
    assert set(imp["parameter"]) == set(FACTORS)
    assert list(imp.columns) == ["parameter", "modelled_variance", "modelled_share", "modelled_lo", "modelled_hi",
                                 "modelled_first", "fanova_variance", "fanova_share",
                                 "fanova_share_of_subset", "ped_anova", "trials", "scored_on", "note"]
    # ramp_shape carries the only planted effect (0.30 against 0.03 of noise): both rank it first by far.
    assert imp["parameter"].iloc[0] == "ramp_shape" and imp["fanova_share"].iloc[0] > 0.5
    assert imp["modelled_share"].iloc[0] > 0.5 and imp["modelled_variance"].is_monotonic_decreasing
    assert imp["fanova_share"].sum() == pytest.approx(1.0) and imp["modelled_share"].sum() == pytest.approx(1.0)
    # The modelled variance is the variance of the modelled table's marginals.
    shape = pd.read_csv(run_dir / "tables" / "modelled_ramp_shape.csv")
    assert imp.loc[0, "modelled_variance"] == pytest.approx(np.var(shape["marginal"].to_numpy()))
    t = imp.set_index("parameter")
    assert t.loc["ramp_shape", "trials"] == 25 and t.loc["ramp_length", "trials"] < t.loc["ramp_start", "trials"] < 25


def test_write_outputs_is_idempotent(report) -> None:
    run_dir, _, _ = report
    before = {p.name: p.read_bytes() for p in (run_dir / "tables").glob("*") if p.suffix in (".csv", ".md", ".tex")}
    driver.write_outputs(run_dir, driver.spec_of_run(run_dir))
    after = {p.name: p.read_bytes() for p in (run_dir / "tables").glob("*") if p.suffix in (".csv", ".md", ".tex")}
    assert after.keys() == before.keys()
    assert after["ablation.csv"] == before["ablation.csv"]
    assert after == before
    # tables/ and plots/ are not mistaken for trials on the second pass.
    assert len(pd.read_csv(run_dir / "tables" / "trials.csv")) == len(report[1])


# --------------------------------------------------------------- confirmation

def test_confirmation_outputs(report) -> None:
    run_dir, _, written = report
    for name in ("tables/confirmation.md", "tables/confirmation.csv", "tables/confirmation.tex", "plots/confirmation.png"):
        assert (run_dir / name).is_file(), name
        assert run_dir / name in written
    summary = pd.read_csv(run_dir / "tables" / "confirmation.csv", keep_default_na=False).set_index("config")
    assert list(summary.index) == ["top1", "top2", "baseline"]
    assert (summary["seeds"] == 3).all()
    assert summary.loc["top1", "wins"] == "3/3"
    assert summary.loc["top2", "wins"] == "2/3"
    assert summary.loc["baseline", "wins"] == ""
    assert math.isclose(float(summary.loc["top1", "mean"]), np.mean(CONFIRM_VALUES["top1"]), rel_tol=1e-9)
    assert math.isclose(float(summary.loc["top1", "delta_vs_baseline"]),
                        np.mean(CONFIRM_VALUES["top1"]) - np.mean(CONFIRM_VALUES["baseline"]), rel_tol=1e-9)
    assert "ramp_shape=linear" in summary.loc["top1", "params"]
    assert float(summary.loc["top1", "p_holm"]) < 0.01 and summary.loc["top1", "sig"] == "**"
    assert r"\begin{tabular}" in (run_dir / "tables" / "confirmation.tex").read_text()
    text = (run_dir / "tables" / "ablation.md").read_text()
    assert "## Confirmation" in text
    answer = text.split("\n\n")[3]
    assert "**Designed, confirmation**: top1" in answer and "better in 3/3 seeds" in answer
    # The designed/ folder holds no search trials.
    trials = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(trials) == 6 * len(SHAPES) + 1


# --------------------------------------------------------------- edge cases

def test_empty_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "mdn_ramp" / "empty"
    run_dir.mkdir(parents=True)
    shutil.copyfile(STUDIES_DIR / "mdn_ramp.yaml", run_dir / driver.SPEC_COPY)
    shutil.copyfile(SEARCH_SPACES_DIR / "mdn_ramp.yaml", run_dir / driver.SEARCH_SPACE_COPY)
    write_run_json(run_dir, status="running")
    written = driver.write_outputs(run_dir, driver.spec_of_run(run_dir)).files
    text = (run_dir / "tables" / "ablation.md").read_text()
    assert text.startswith("# mdn_ramp: no results yet")
    assert "No trial of run `empty` has reported an epoch." in text
    assert run_dir / "tables" / "ablation.md" in written
    assert "(no trials yet)" in (run_dir / "tables" / "trials.md").read_text()
    assert not (run_dir / "tables" / "ablation.csv").exists()


def test_trial_started_but_no_epoch_yet(tmp_path: Path) -> None:
    """A trial folder with params.json and an empty result.json: still no results."""
    run_dir = tmp_path / "mdn_ramp" / "starting"
    run_dir.mkdir(parents=True)
    shutil.copyfile(STUDIES_DIR / "mdn_ramp.yaml", run_dir / driver.SPEC_COPY)
    shutil.copyfile(SEARCH_SPACES_DIR / "mdn_ramp.yaml", run_dir / driver.SEARCH_SPACE_COPY)
    write_run_json(run_dir, status="running")
    (run_dir / "trial_00000").mkdir()
    (run_dir / "trial_00000" / "params.json").write_text(json.dumps(_trial_config({"ramp_shape": "constant", "lr": 1e-3})))
    (run_dir / "trial_00000" / "result.json").write_text("")
    driver.write_outputs(run_dir, driver.spec_of_run(run_dir))
    assert (run_dir / "tables" / "ablation.md").read_text().startswith("# mdn_ramp: no results yet")
    table = pd.read_csv(run_dir / "tables" / "trials.csv", dtype={"trial_id": str})
    assert table["trial_id"].tolist() == ["00000"] and table["status"].tolist() == ["running"]


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a run folder"):
        driver.spec_of_run(tmp_path)                      # a folder without run.json
    missing = tmp_path / "no-such-run"
    with pytest.raises(UserError):
        driver.spec_of_run(missing)
    with pytest.raises(UserError, match="no such run folder"):
        load_trials(missing, metric="val_mse", mode="min", params=FACTORS, max_epochs=MAX_EPOCHS)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt run file"):
        driver.spec_of_run(tmp_path)


def test_run_json_without_spec_copy(tmp_path: Path) -> None:
    run_dir = tmp_path / "mdn_ramp" / "nospec"
    run_dir.mkdir(parents=True)
    write_run_json(run_dir)
    with pytest.raises(UserError, match="no such file"):
        driver.spec_of_run(run_dir)


def test_tex_captions_are_valid_latex(report) -> None:
    run_dir, _, _ = report
    for path in sorted((run_dir / "tables").glob("*.tex")):
        caption = re.search(r"\\caption\{(.*)\}\n", path.read_text()).group(1)
        assert not re.search(r"(?<!\\)_", caption), (path.name, caption)
    # Bold marks are dropped, the legend's literal * and ** are kept.
    caption = re.search(r"\\caption\{(.*)\}\n", (run_dir / "tables" / "ablation_ramp_shape.tex").read_text()).group(1)
    assert caption.startswith("ramp\\_shape, observed") and "** p\\_holm \\textless{} 0.01" in caption


# --------------------------------------------------------------- load_trials on the folder

def test_load_trials_reads_the_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "mdn_ramp" / "r"
    epochs = write_run_folder(run_dir, per_shape=3)
    params = FACTORS
    run = load_trials(run_dir, metric="val_mse", mode="min", params=params, max_epochs=MAX_EPOCHS)
    t = run.trials.set_index("trial_id")
    assert t["epochs"].to_dict() == epochs
    assert len(run.history) == sum(epochs.values())
    assert set(run.history.columns) >= {"trial_id", "epoch", "val_mse", "time_total_s", "training_iteration"}
    assert t.loc[FAILED_ID, "status"] == STATUS_FAILED and t.loc[FAILED_ID, "error"] == ERROR_TAIL
    done = t[t["epochs"] == MAX_EPOCHS]
    assert (done["status"] == "complete").all()
    # No optuna.db and the run has ended: a trial that stopped early cannot be told
    # apart from an interrupted one; while the run is active it is "running".
    short = t[(t["epochs"] < MAX_EPOCHS) & (t.index != FAILED_ID)]
    assert (short["status"] == "interrupted").all()
    active = load_trials(run_dir, metric="val_mse", mode="min", params=params, max_epochs=MAX_EPOCHS, run_active=True)
    a = active.trials.set_index("trial_id")
    assert (a.loc[short.index, "status"] == "running").all() and a.loc[FAILED_ID, "status"] == STATUS_FAILED
    for tid, r in t.iterrows():
        h = run.history[run.history["trial_id"] == tid].sort_values("epoch")
        assert r["best_val_mse"] == pytest.approx(h["val_mse"].min())
        assert r["last_val_mse"] == pytest.approx(h["val_mse"].iloc[-1])
    assert t.loc[t["ramp_shape"] == "constant", "initial_weight"].isna().all()
    assert t.loc[t["ramp_shape"] == "step", "ramp_length"].isna().all()
    assert t.loc[t["ramp_shape"] == "linear", ["initial_weight", "ramp_start", "ramp_length"]].notna().all().all()


def test_load_trials_repeated_epoch_and_partial_line(tmp_path: Path) -> None:
    """A resumed trial repeats an epoch (the last one counts); a line being written is skipped."""
    run_dir = tmp_path / "run"
    trial_dir = run_dir / "trial_abc"
    trial_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text(json.dumps(_trial_config({"ramp_shape": "constant", "lr": 1e-3})))
    lines = [{"trial_id": "abc", "epoch": 1, "val_mse": 2.0}, {"trial_id": "abc", "epoch": 2, "val_mse": 1.5},
             {"trial_id": "abc", "epoch": 2, "val_mse": 1.4}, {"trial_id": "abc", "epoch": 3, "val_mse": float("nan")}]
    (trial_dir / "result.json").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"trial_id": "abc", "epo')
    run = load_trials(run_dir, metric="val_mse", mode="min", params=FACTORS, max_epochs=MAX_EPOCHS)
    r = run.trials.iloc[0]
    assert r["epochs"] == 3 and r["best_val_mse"] == pytest.approx(1.4) and math.isnan(r["last_val_mse"])
    assert run.history["epoch"].tolist() == [1, 2, 3]


def test_a_trial_without_the_metric_is_failed_with_the_reason(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    for tid, row in (("txt", {"val_mse": "0.3"}), ("none", {"other": 1.0})):
        trial_dir = run_dir / f"trial_{tid}"
        trial_dir.mkdir(parents=True)
        (trial_dir / "params.json").write_text(json.dumps(_trial_config({"ramp_shape": "constant", "lr": 1e-3})))
        (trial_dir / "result.json").write_text(json.dumps({"trial_id": tid, "epoch": 1, "pid": 7, **row}) + "\n")
    t = load_trials(run_dir, metric="val_mse", mode="min", params=FACTORS, max_epochs=MAX_EPOCHS).trials.set_index("trial_id")
    assert (t["status"] == STATUS_FAILED).all()
    assert t.loc["txt", "error"] == "never reported the study's metric `val_mse` as a number (it reported '0.3')"
    assert t.loc["none", "error"] == "never reported the study's metric `val_mse` as a number (it reported: epoch, other)"


def test_a_trial_retried_to_the_end_after_a_resume_is_complete_although_optuna_said_fail(tmp_path: Path) -> None:
    """Optuna was told FAIL when the trial errored; the resumed run retried it and it
    ran every epoch (Tune's snapshot: TERMINATED). The results on disk are the truth."""
    import optuna

    run_dir = tmp_path / "run"
    trial_dir = run_dir / "trial_r1"
    trial_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text(json.dumps(_trial_config({"ramp_shape": "constant", "lr": 1e-3})))
    (trial_dir / "result.json").write_text("".join(json.dumps({"trial_id": "r1", "epoch": e, "val_mse": 1.0 / e}) + "\n"
                                                   for e in range(1, MAX_EPOCHS + 1)))
    (trial_dir / "error.txt").write_text("Traceback ...\nray.exceptions.ActorDiedError: the worker died\n")
    study = optuna.create_study(study_name="mdn_ramp", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={}, distributions={},
                                              user_attrs={_tune_trial_id_attr(): "r1"}))
    def status() -> tuple[str, str]:
        row = load_trials(run_dir, metric="val_mse", mode="min", params=FACTORS, max_epochs=MAX_EPOCHS).trials.iloc[0]
        return row["status"], row["error"]

    assert status()[0] == STATUS_FAILED   # no snapshot says otherwise
    entry = json.dumps({"trial_id": "r1", "status": "TERMINATED"})
    (run_dir / "experiment_state-2026-12-01_10-00-00.json").write_text(json.dumps({"trial_data": [[entry, "{}"]]}))
    assert status() == ("complete", "recovered from: ray.exceptions.ActorDiedError: the worker died")
    errored = json.dumps({"trial_id": "r1", "status": "ERROR"})
    (run_dir / "experiment_state-2026-12-01_11-00-00.json").write_text(json.dumps({"trial_data": [[errored, "{}"]]}))
    assert status()[0] == STATUS_FAILED   # the newest snapshot counts


def _tune_trial_id_attr() -> str:
    from studies.runs.run_folder import TUNE_TRIAL_ID_ATTR

    return TUNE_TRIAL_ID_ATTR


def _write_optuna_db(run_dir: Path, epochs: dict[str, int], attr: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="mdn_ramp", storage=f"sqlite:///{run_dir / 'optuna.db'}", direction="minimize")
    dist = {"ramp_shape": optuna.distributions.CategoricalDistribution(SHAPES),
            "lr": optuna.distributions.FloatDistribution(3e-4, 3e-3, log=True)}
    for tid, ep in sorted(epochs.items()):
        config = json.loads((run_dir / f"trial_{tid}" / "params.json").read_text())
        state = (optuna.trial.TrialState.FAIL if tid == FAILED_ID else optuna.trial.TrialState.COMPLETE
                 if ep == MAX_EPOCHS else optuna.trial.TrialState.PRUNED)
        study.add_trial(optuna.trial.create_trial(
            params={"ramp_shape": config["ramp_shape"], "lr": config["lr"]}, distributions=dist, state=state,
            value=1.0 if state == optuna.trial.TrialState.COMPLETE else None, user_attrs={attr: tid},
            intermediate_values={e: 1.0 for e in range(1, ep + 1)}))


@pytest.fixture(scope="module")
def optuna_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A run folder with the optuna.db a real run has (Optuna's record of each trial)."""
    run_dir = tmp_path_factory.mktemp("optuna") / "run"
    epochs = write_run_folder(run_dir, per_shape=2)
    _write_optuna_db(run_dir, epochs, _tune_trial_id_attr())
    return run_dir, epochs


def test_load_trials_with_optuna_db(optuna_run, monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna's states name how each trial ended."""
    run_dir, epochs = optuna_run
    run = load_trials(run_dir, metric="val_mse", mode="min", params=FACTORS, max_epochs=MAX_EPOCHS)
    t = run.trials.set_index("trial_id")
    assert t.loc[FAILED_ID, "status"] == STATUS_FAILED and t.loc[FAILED_ID, "optuna_state"] == "FAIL"
    pruned = [tid for tid, ep in epochs.items() if ep < MAX_EPOCHS and tid != FAILED_ID]
    assert (t.loc[pruned, "status"] == "stopped by ASHA").all()
    assert (t.loc[[tid for tid, ep in epochs.items() if ep == MAX_EPOCHS], "status"] == "complete").all()
    assert run.trials["optuna_number"].tolist() == list(range(len(epochs)))
    # Parameters come from Optuna's record (only what was sampled).
    assert t["initial_weight"].isna().all() and t["ramp_shape"].notna().all()


def test_load_trials_does_not_need_ray(optuna_run, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, epochs = optuna_run
    monkeypatch.delitem(sys.modules, "studies.tune.optuna_bridge", raising=False)
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)   # any `import ray...` now raises instead of importing Ray
    run = load_trials(run_dir, metric="val_mse", mode="min", params=FACTORS, max_epochs=MAX_EPOCHS)
    assert len(run.trials) == len(epochs)


def test_report_on_a_damaged_run_folder_reads_what_it_can_and_names_the_rest(tmp_path: Path, capsys) -> None:
    from studies.cli import main

    run_dir = tmp_path / "mdn_ramp" / "damaged"
    epochs = write_run_folder(run_dir, per_shape=2, with_failed=False)
    broken = sorted(run_dir.glob("trial_*"))[0]
    (broken / "params.json").write_text('{"ramp_shape": "const')          # torn by a full disk
    (run_dir / "optuna.db").write_bytes(b"SQLite format 3\x00" + b"\x07" * 2048)
    assert main(["mdn_ramp", "--report", "--run", "damaged", "--storage", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in err if line.startswith("warning: ")] == [
        f"{broken.name}/params.json", "optuna.db"], err
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == len(epochs) - 1
    report_md = (run_dir / "tables" / "ablation.md").read_text()
    assert f"**Left out, unreadable:** {broken.name}/params.json: unreadable" in report_md
    assert "**Left out, unreadable:** optuna.db: unreadable" in report_md


def test_runs_reads_run_json_alone(report) -> None:
    """--runs lists runs from their run.json files: it imports none of the report's
    pandas, scipy and matplotlib, nor Ray or torch (each costs seconds of start-up)."""
    run_dir = report[0]
    out = _in_a_fresh_interpreter(
        "import sys; from studies.cli import main; "
        f"rc = main([{run_dir.parent.name!r}, '--storage', {str(run_dir.parents[1])!r}, '--runs']); "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'scipy', 'matplotlib', 'ray', 'torch'}); "
        "assert rc == 0 and not heavy, heavy")
    assert run_dir.name in out, out
