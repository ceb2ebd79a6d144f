"""A study with two objectives, through the CLI as a researcher runs it: the
searcher, multi-objective ASHA, the confirmation of the front and the
trade-off report, checked against the front computed by brute force from
what the trials reported."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import run_cli

# Two objectives that pull apart: `speed` grows with x, `error` too; `mode` b costs error for nothing.
TRAINABLE = '''
from ray import tune

def train(config):
    x, worse = config["x"], 0.5 if config["mode"] == "b" else 0.0
    for epoch in range(1, config["max_epochs"] + 1):
        late = 1.0 / epoch
        tune.report({"epoch": epoch, "error": x ** 2 + worse + late + 0.01 * config["seed"] % 7,
                     "speed": x - 0.1 * late})
'''


def test_two_objectives_end_to_end(tmp_path: Path, cache_dir: Path) -> None:
    project = tmp_path / "proj"
    (project / "mo_pkg").mkdir(parents=True)
    (project / "mo_pkg" / "__init__.py").write_text("")
    (project / "mo_pkg" / "fn.py").write_text(textwrap.dedent(TRAINABLE))
    (project / "space.yaml").write_text("mode: {type: categorical, choices: [a, b]}\nx: {type: float, low: 0.0, high: 2.0}\n")
    (project / "mo.yaml").write_text(textwrap.dedent("""
        trainable: mo_pkg.fn:train
        description: How much error does speed cost, and does mode b ever pay?
        metric: [error, speed]
        mode: [min, max]
        search_space: space.yaml
        budget: {max_epochs: 9, grace_period: 1, reduction_factor: 3, num_samples: 14, checkpoint_every: 3}
        resources: {cpus_per_trial: 0.5}
        config: {mode: a, x: 1.0}
        ablation: {factors: [mode, x], baseline: {mode: b, x: 1.0}, confirm: {enabled: true, top_k: 2, seeds: 2}}
    """))
    proc = run_cli(str(project / "mo.yaml"), "--storage", str(tmp_path / "results"), "--cache-dir", str(cache_dir),
                   "--run", "r", "--num-cpus", "2", cwd=project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "results" / "mo" / "r"
    trials = pd.read_csv(run_dir / "tables" / "trials.csv")
    assert len(trials) == 14
    assert (trials["status"] == "stopped by ASHA").any() and (trials["status"] == "complete").any()

    # The front table is the brute-force front of every trial's epoch-9 values.
    rows = []
    for path in run_dir.glob("trial_*/result.json"):
        last = [r for r in map(pd.io.json.ujson_loads, path.read_text().splitlines()) if r["epoch"] == 9]
        if last:
            rows.append((path.parent.name.removeprefix("trial_"), last[-1]["error"], last[-1]["speed"]))
    points = np.array([[e, -s] for _, e, s in rows])   # both minimised
    expected = {rows[i][0] for i in range(len(rows))
                if not any(np.all(q <= points[i]) and np.any(q < points[i]) for q in points)}
    front = pd.read_csv(run_dir / "tables" / "pareto_front.csv")
    assert set(front["trial_id"]) == expected
    levels = pd.read_csv(run_dir / "tables" / "pareto_levels.csv")
    by_mode = levels[levels["factor"] == "mode"].set_index("level")["on_front"]
    assert by_mode.to_dict() == {k: v for k, v in front["mode"].value_counts().items()} | {
        k: 0 for k in by_mode.index if k not in set(front["mode"])}

    report = (run_dir / "tables" / "ablation.md").read_text()
    assert report.startswith("# mo: trade-off report") and "Hypervolume of the front" in report
    assert "The baseline" in report and "## error (lower is better): modelled" in report and "## speed (higher is better): modelled" in report
    confirmation = pd.read_csv(run_dir / "tables" / "confirmation.csv")
    # the baseline runs under its own label, or under a front label when it is a front config itself
    labels = confirmation["config"]
    assert labels.str.endswith("baseline").sum() == 1 and labels.str.startswith("front").sum() >= 1
    assert (confirmation["seeds"] == 2).all()
    assert (run_dir / "plots" / "pareto.png").is_file()
    for metric in ("error", "speed"):
        assert (run_dir / "tables" / metric / "importance.csv").is_file()
