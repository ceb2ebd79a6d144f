"""A researcher's own trainable, from their own directory, through the same CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli

TRAINABLE = '''
import math
from ray import tune

def train_quadratic(config):
    """Plain Ray Tune: a noisy quadratic bowl, one 'epoch' per step."""
    x, opt = config["x"], config["optimum"]
    for epoch in range(1, config["max_epochs"] + 1):
        value = (x - opt) ** 2 + config["shape_penalty"][config["shape"]] + 1.0 / epoch
        tune.report({"epoch": epoch, "loss": value, "data_path": config.get("data_path", "")})
'''


def test_user_trainable_from_its_own_directory(tmp_path: Path, cache_dir: Path) -> None:
    project = tmp_path / "my_project"
    (project / "my_pkg").mkdir(parents=True)
    (project / "my_pkg" / "__init__.py").write_text("")
    (project / "my_pkg" / "objective.py").write_text(textwrap.dedent(TRAINABLE))
    (project / "space.yaml").write_text(
        "shape: {type: categorical, choices: [round, flat]}\nx: {type: float, low: -2.0, high: 2.0}\n")
    (project / "quad.yaml").write_text(textwrap.dedent("""
        trainable: my_pkg.objective:train_quadratic
        description: Does the flat shape beat the round one?
        metric: loss
        mode: min
        search_space: space.yaml
        budget: {max_epochs: 3, grace_period: 1, reduction_factor: 3, num_samples: 6, checkpoint_every: 1}
        resources: {cpus_per_trial: 0.5}
        config: {optimum: 0.5, shape_penalty: {round: 1.0, flat: 0.0}, shape: round, x: 0.0}
        ablation: {factors: [shape, x], baseline: {shape: round}}
    """))
    data = project / "my_data.h5"
    data.write_bytes(b"anything: a user trainable reads its own file")
    proc = run_cli(str(project / "quad.yaml"), "--storage", str(tmp_path / "results"), "--cache-dir", str(cache_dir),
                   "--run", "mine", "--num-cpus", "2", "--data", str(data), cwd=project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "results" / "quad" / "mine"
    table = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(table) == 6 and set(table["status"]) <= {"complete", "stopped by ASHA"}
    assert set(table["shape"]) <= {"round", "flat"}
    report = (run_dir / "tables" / "ablation.md").read_text()
    assert report.startswith("# quad: ablation report") and "shape" in report
    row = json.loads(next(run_dir.glob("trial_*/result.json")).read_text().splitlines()[0])
    assert row["data_path"] == str(data)  # --data reaches a user trainable as config["data_path"]


def test_bundled_example_smoke(tmp_path: Path, cache_dir: Path) -> None:
    proc = run_cli("examples/sine_mlp/sine_mlp.yaml", "--smoke", "--storage", str(tmp_path), "--cache-dir", str(cache_dir),
                   "--run", "ex", "--num-cpus", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = pd.read_csv(tmp_path / "sine_mlp" / "ex" / "tables" / "trials.csv")
    assert len(table) == 4 and table["best_val_mse"].notna().all()
