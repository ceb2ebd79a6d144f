"""`python studies/run.py mdn_ramp --smoke` end to end, in a subprocess."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.studies.report.test_latex import compile_problems, needs_pdflatex


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, str, str]:
    storage = tmp_path_factory.mktemp("results")
    # 8 trials so that ASHA has something to stop (grace 1, reduction 3); --confirm: the designed stage too.
    proc = run_cli("mdn_ramp", "--smoke", "--confirm", "--storage", str(storage), "--cache-dir", str(cache_dir),
                   "--num-samples", "8", "--run", "smoke-e2e", "--num-cpus", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage / "mdn_ramp" / "smoke-e2e", proc.stdout, proc.stderr


def test_run_folder_has_everything(smoke_run: tuple[Path, str, str]) -> None:
    run_dir, stdout, _ = smoke_run
    for name in ("run.json", "spec.yaml", "search_space.yaml", "optuna.db", "tuner.pkl", "tables/trials.csv", "tables/trials.md",
                 "tables/ablation.md", "tables/ablation.csv", "tables/importance.md", "tables/budget.md",
                 "tables/ablation_ramp_shape.tex", "plots/factors.png", "plots/learning_curves.png"):
        assert (run_dir / name).is_file(), name
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished"
    assert info["invocation"]["smoke"] is True
    assert "wrote" in stdout and str(run_dir) in stdout
    assert info["platform"]["version"] and set(info["platform"]) == {"version", "commit", "dirty"}
    assert set(info["stage_s"]) == {"search", "designed", "report"}
    report = (run_dir / "tables" / "ablation.md").read_text()
    assert report.startswith("# mdn_ramp: ablation report\n\n**Question.** ")
    assert report.split("\n\n")[2].splitlines()[1] == "- A smoke run: nothing here is a finding."
    answer = report.split("\n\n")[3]
    assert answer.startswith("(lower val_mse is better)\n- **Smoke run**")
    for factor in ("ramp_shape", "initial_weight", "ramp_start", "ramp_length", "lr"):   # a line per question factor
        assert f"- **{factor}** (not answered) — not answered: a smoke run" in answer, factor
    assert not re.search(r" \*{1,2}\)|significant\b(?! )", answer.replace("no difference is marked significant", ""))


@needs_pdflatex
def test_every_latex_table_compiles(smoke_run: tuple[Path, str, str], tmp_path: Path) -> None:
    """Every .tex the smoke wrote (designed stage included), each in a minimal
    article with the packages its header names: no error, no overfull box."""
    tables = sorted((smoke_run[0] / "tables").glob("*.tex"))
    assert any(t.name == "confirmation.tex" for t in tables), [t.name for t in tables]
    problems = {t.name: p for t in tables if (p := compile_problems(t, tmp_path))}
    assert not problems, problems


def test_trials_table(smoke_run: tuple[Path, str, str]) -> None:
    run_dir = smoke_run[0]
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == 8
    assert set(table["status"]) <= {"complete", "stopped by ASHA"}
    assert (table["status"] == "stopped by ASHA").any(), "ASHA stopped nothing"
    assert (table["status"] == "complete").any()
    assert (table.loc[table["status"] == "complete", "epochs"] == 4).all()
    assert (table.loc[table["status"] == "stopped by ASHA", "epochs"] < 4).all()
    assert table["epochs"].is_monotonic_decreasing                      # deepest rung first...
    for _, rows in table.groupby("epochs"):
        assert rows["last_val_mse"].is_monotonic_increasing              # ...then by the value Optuna holds
    # Conditional parameters: `constant` never samples the ramp knobs.
    constant = table[table["ramp_shape"] == "constant"]
    assert constant["initial_weight"].isna().all()
    md = (run_dir / "tables" / "trials.md").read_text()
    assert md.startswith("# Trials (8)") and "| trial_id" in md


def test_optuna_study_tells_the_truth(smoke_run: tuple[Path, str, str]) -> None:
    run_dir = smoke_run[0]
    study = optuna.load_study(study_name="mdn_ramp", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    trials = study.get_trials()
    assert len(trials) == 8
    table = pd.read_csv(run_dir / "tables" / "trials.csv").set_index("trial_id")
    states = {t.state.name for t in trials}
    assert states <= {"COMPLETE", "PRUNED"} and "PRUNED" in states
    for t in trials:
        tune_id = t.user_attrs["tune_trial_id"]
        epochs = int(table.loc[tune_id, "epochs"])
        # Every epoch's value is an intermediate value, the last one included.
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
        if t.state.name == "PRUNED":
            assert epochs < 4
        else:
            assert epochs == 4 and t.value == pytest.approx(t.intermediate_values[4])
        assert "ramp_shape" in t.params and "lr" in t.params


def test_trials_overlap(smoke_run: tuple[Path, str, str]) -> None:
    """Concurrency really is 2: some trials' epochs interleave in time."""
    run_dir = smoke_run[0]
    spans = []
    for trial_dir in run_dir.glob("trial_*"):
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]
        start = rows[0]["timestamp"] - rows[0]["time_this_iter_s"]
        spans.append((start, rows[-1]["timestamp"]))
    spans.sort()
    overlaps = sum(1 for (s1, e1), (s2, e2) in zip(spans, spans[1:]) if s2 < e1)
    assert overlaps >= 1, spans


def test_existing_run_folder_is_refused(smoke_run: tuple[Path, str, str], cache_dir: Path) -> None:
    run_dir = smoke_run[0]
    before = sorted(p.name for p in run_dir.iterdir())
    proc = run_cli("mdn_ramp", "--smoke", "--storage", str(run_dir.parent.parent), "--cache-dir", str(cache_dir), "--run", "smoke-e2e")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "already exists" in proc.stderr and "--resume" in proc.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_runs_listing(smoke_run: tuple[Path, str, str]) -> None:
    run_dir = smoke_run[0]
    proc = run_cli("mdn_ramp", "--runs", "--storage", str(run_dir.parent.parent))
    assert proc.returncode == 0 and "smoke-e2e" in proc.stdout and "finished" in proc.stdout


def test_tensorboard_hparams_view(smoke_run: tuple[Path, str, str]) -> None:
    """TensorBoard's own event reader sees one HParams session per trial, with the
    sampled parameters and the final metrics."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir = smoke_run[0]
    table = pd.read_csv(run_dir / "tables" / "trials.csv").set_index("trial_id")
    sessions = sorted((run_dir / "hparams").iterdir())
    assert len(sessions) == len(table)
    for session in sessions:
        ea = EventAccumulator(str(session))
        ea.Reload()
        assert {"hparams/val_mse", "hparams/best_val_mse", "hparams/epochs"} <= set(ea.Tags()["scalars"])
        content = {tag: plugin_data_pb2.HParamsPluginData.FromString(raw) for tag, raw in ea.PluginTagToContent("hparams").items()}
        experiment = content["_hparams_/experiment"].experiment
        assert {h.name for h in experiment.hparam_infos} <= {"ramp_shape", "initial_weight", "ramp_start", "ramp_length", "lr", "status"}
        start = content["_hparams_/session_start_info"].session_start_info
        assert start.hparams["ramp_shape"].string_value == table.loc[session.name, "ramp_shape"]
        assert start.hparams["lr"].number_value == pytest.approx(table.loc[session.name, "lr"])
        assert ea.Scalars("hparams/epochs")[-1].value == table.loc[session.name, "epochs"]
    # Ray Tune's own per-trial scalars are kept.
    trial_dir = next(run_dir.glob("trial_*"))
    ea = EventAccumulator(str(trial_dir))
    ea.Reload()
    assert "ray/tune/val_mse" in ea.Tags()["scalars"]
    for trial_dir in run_dir.glob("trial_*"):                       # ...without a second HParams record of their own
        ea = EventAccumulator(str(trial_dir))
        ea.Reload()
        with pytest.raises(KeyError):
            ea.PluginTagToContent("hparams")


# Ray's, Tune's and Optuna's own lines that are noise on a study's console (issue 15).
KNOWN_NOISE = ("Pre-set value", "max_concurrent_trials", "Token authentication", "Configuration for experiment",
               "View detailed results here", "To visualize your results with TensorBoard", "A new study created",
               "Traceback")


def test_console_has_no_library_noise(smoke_run: tuple[Path, str, str]) -> None:
    _, stdout, stderr = smoke_run
    for line in (stdout + stderr).splitlines():
        assert not any(noise in line for noise in KNOWN_NOISE), line
        assert " WARNING " not in line and "[W " not in line, line
    assert not stderr.strip(), stderr[-2000:]


def test_console_ends_with_the_answer_and_its_path(smoke_run: tuple[Path, str, str]) -> None:
    run_dir, stdout, _ = smoke_run
    lines = stdout.rstrip("\n").splitlines()
    assert lines[-1] == f"answer and tables: {run_dir / 'tables' / 'ablation.md'}"
    start = next(i for i, ln in enumerate(lines) if "(list them with --verbose)" in ln)
    assert "wrote " not in "\n".join(lines[start + 1:])                   # no file list without --verbose
    printed = " ".join(" ".join(lines[start + 1:-1]).split())
    answer = (run_dir / "tables" / "ablation.md").read_text().split("\n\n")[3]
    assert printed == " ".join(answer.split())                             # the report's own answer, word for word
    took = next(ln for ln in lines if ln.startswith("mdn_ramp finished in "))
    assert "search " in took and "designed runs " in took and "report " in took


def test_every_best_is_optunas(smoke_run: tuple[Path, str, str]) -> None:
    """The console's "best" (summary and progress lines) and the answer's best
    trial are the value at the full budget, the one Optuna holds."""
    run_dir, stdout, _ = smoke_run
    study = optuna.load_study(study_name="mdn_ramp", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    best = study.best_value
    summary = re.search(r"best val_mse at the full budget = ([0-9.e-]+)", stdout)
    assert summary and float(summary.group(1)) == pytest.approx(best, rel=1e-4)
    progress = re.findall(r"best val_mse at 4 epochs=([0-9.e-]+)", stdout)
    assert progress and float(progress[-1]) == pytest.approx(best, rel=1e-3)
    answer = (run_dir / "tables" / "ablation.md").read_text().split("\n\n")[3]
    in_answer = re.search(r"\*\*Best search trial\*\* at the full budget .*?: val_mse ([0-9.e-]+)", answer)
    assert in_answer and float(in_answer.group(1)) == pytest.approx(best, rel=1e-3)


def test_designed_progress_names_label_and_seed(smoke_run: tuple[Path, str, str]) -> None:
    _, stdout, _ = smoke_run
    designed = stdout[stdout.index("confirmation:"):]
    ended = [ln for ln in designed.splitlines() if "complete after" in ln]
    assert ended and all(re.search(r"\] (top\d+|baseline) \(seed \d+\) complete after", ln) for ln in ended), ended


def test_each_search_trial_has_its_own_seed(smoke_run: tuple[Path, str, str]) -> None:
    run_dir = smoke_run[0]
    configs = [json.loads((d / "params.json").read_text()) for d in sorted(run_dir.glob("trial_*"))]
    assert len({c["seed"] for c in configs}) == 1                        # the study seed, shared (common random numbers)
    assert len({c["trial_seed"] for c in configs}) == len(configs)       # each trial its own


def test_confirm_on_a_run_refuses_what_it_cannot_honour(smoke_run: tuple[Path, str, str], cache_dir: Path) -> None:
    run_dir = smoke_run[0]
    before = (run_dir / "run.json").read_text()
    for extra in (["--set", "budget.max_epochs=10"], ["--seed", "3"]):
        proc = run_cli("mdn_ramp", "--smoke", "--confirm", "--run", "smoke-e2e", "--storage", str(run_dir.parent.parent),
                       "--cache-dir", str(cache_dir), *extra)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "only ablation.*" in proc.stderr, proc.stderr
    proc = run_cli("mdn_ramp", "--smoke", "--resume", "--run", "smoke-e2e", "--storage", str(run_dir.parent.parent),
                   "--set", "budget.max_epochs=3")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "would change it" in proc.stderr, proc.stderr
    assert (run_dir / "run.json").read_text() == before


def test_confirm_on_a_run_honours_ablation_overrides(smoke_run: tuple[Path, str, str], cache_dir: Path) -> None:
    """`--confirm --run NAME --set ablation.confirm.top_k=1 --set ablation.confirm.seeds=2`
    runs 1 top config + the baseline over 2 seeds, and --report later uses the same settings."""
    run_dir = smoke_run[0]
    copy = run_dir.parent / "smoke-copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("designed"))
    proc = run_cli("mdn_ramp", "--smoke", "--confirm", "--run", "smoke-copy", "--storage", str(run_dir.parent.parent),
                   "--cache-dir", str(cache_dir), "--num-cpus", "2",
                   "--set", "ablation.confirm.top_k=1", "--set", "ablation.confirm.seeds=2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    plan = json.loads((copy / "designed" / "candidates.json").read_text())
    assert sorted(c["label"] for c in plan["configs"]) == ["baseline", "top1"]
    assert plan["seeds"] == 2 and len(plan["seed_values"]) == 2
    info = json.loads((copy / "run.json").read_text())
    assert info["designed_overrides"] == ["ablation.confirm.top_k=1", "ablation.confirm.seeds=2"]
    from studies.driver import spec_of_run

    spec = spec_of_run(copy, for_training=False)
    assert spec.ablation.confirm.top_k == 1 and spec.ablation.confirm.seeds == 2
    assert proc.stdout.rstrip().splitlines()[-1].startswith("answer and tables: ")
