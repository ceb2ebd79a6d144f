"""NaN losses, determinism and two runs at once, through the real CLI."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pandas as pd

from tests.conftest import REPO, RUN_PY, run_cli

EXPLODING = '''
from ray import tune
from core.training import check_finite

def train(config):
    for epoch in range(1, config["max_epochs"] + 1):
        loss = float("nan") if (config["mode"] == "explode" and epoch == 2) else 1.0 / epoch + config["x"]
        check_finite({"loss": loss}, epoch)   # raises NonFiniteLossError, as the bundled loop does
        tune.report({"epoch": epoch, "loss": loss})
'''


def test_nonfinite_loss_fails_the_trial_and_the_study_goes_on(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "boom").mkdir()
    (tmp_path / "boom" / "__init__.py").write_text("")
    (tmp_path / "boom" / "fn.py").write_text(textwrap.dedent(EXPLODING))
    (tmp_path / "space.yaml").write_text("mode: {type: categorical, choices: [explode, calm]}\nx: {type: float, low: 0.0, high: 1.0}\n")
    (tmp_path / "boom.yaml").write_text(
        "trainable: boom.fn:train\nmetric: loss\nmode: min\nsearch_space: space.yaml\nseed: 3\n"
        "budget: {max_epochs: 3, grace_period: 3, num_samples: 6, max_failures: 0}\n"
        "resources: {cpus_per_trial: 0.5}\nconfig: {mode: calm, x: 0.0}\nablation: {factors: [mode], baseline: {mode: calm}}\n")
    proc = run_cli(str(tmp_path / "boom.yaml"), "--storage", str(tmp_path / "res"), "--cache-dir", str(cache_dir),
                   "--run", "nan", "--num-cpus", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "res" / "boom" / "nan"
    table = pd.read_csv(run_dir / "tables" / "trials.csv").fillna("")
    exploded = table[table["mode"] == "explode"]
    calm = table[table["mode"] == "calm"]
    assert len(exploded) and len(calm) and len(table) == 6
    assert (exploded["status"] == "failed").all()
    assert exploded["error"].str.contains("NonFiniteLossError: non-finite loss=nan at epoch 2").all()
    assert (calm["status"] == "complete").all()            # the study went on
    study = optuna.load_study(study_name="boom", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    states = {t.user_attrs["tune_trial_id"]: t.state.name for t in study.get_trials()}
    assert {states[t] for t in exploded["trial_id"]} == {"FAIL"}  # the searcher was told
    assert "failed" in (run_dir / "tables" / "trials.md").read_text()


def test_two_runs_at_once_are_independent_and_deterministic(tmp_path: Path, cache_dir: Path) -> None:
    """Two runs of one study, same seed, started together under one results root:
    separate folders, both finished, and (trials one at a time) the same configs
    and the same metrics."""
    args = ["mdn_ramp", "--smoke", "--storage", str(tmp_path), "--cache-dir", str(cache_dir), "--num-samples", "3",
            "--max-concurrent", "1", "--num-cpus", "1", "--seed", "7"]
    procs = [subprocess.Popen([sys.executable, str(RUN_PY), *args], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    runs = sorted((tmp_path / "mdn_ramp").iterdir())
    assert len(runs) == 2 and runs[0].name != runs[1].name
    tables = []
    for run in runs:
        assert json.loads((run / "run.json").read_text())["status"] == "finished"
        t = pd.read_csv(run / "tables" / "trials.csv").drop(columns=["trial_id"])
        tables.append(t.sort_values(["ramp_shape", "lr"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(tables[0], tables[1])


# Unpickling that runs only on bytes checked just before (studies._compat.tune_pickles_checked:
# Tune's own tuner.pkl load, given the bytes after their signature check).
CHECKED_UNPICKLING = {("studies/_compat.py", "real_pickle.loads")}


def test_safety_rules_hold_in_the_source() -> None:
    """Checkpoints load with weights_only=True, YAML with safe_load, no eval/exec of user strings."""
    offenders = []
    for path in [*REPO.glob("core/**/*.py"), *REPO.glob("studies/**/*.py"), *REPO.glob("trainables/**/*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name in ("eval", "exec") or name.endswith(("yaml.load", "pickle.loads", "pickle.load")):
                if (path.relative_to(REPO).as_posix(), name) not in CHECKED_UNPICKLING:
                    offenders.append(f"{path}:{node.lineno} {name}")
            if name.endswith("Loader") and not name.startswith("yaml.") and isinstance(node.func, ast.Name):
                offenders += [f"{path}:{node.lineno} {name} is not a SafeLoader" for cls in ast.walk(tree)
                              if isinstance(cls, ast.ClassDef) and cls.name == name
                              and [ast.unparse(b) for b in cls.bases] != ["yaml.SafeLoader"]]
            if name.endswith("torch.load"):
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if kw.get("weights_only") != "True":
                    offenders.append(f"{path}:{node.lineno} torch.load without weights_only=True")
    assert not offenders, offenders
