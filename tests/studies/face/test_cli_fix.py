"""Pinning a searched parameter for one run (`--fix NAME=VALUE`), and `--set config.X`
on a searched X refused, through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studies.cli import build_parser
from studies.runs import run_folder
from studies.runs.run_folder import Invocation, RunInfo
from tests.conftest import run_cli

SET_REFUSED = ("error: --set config.lr=-1: lr is searched (search_spaces/mdn_ramp.yaml); pin it for this run with "
               "--fix lr=VALUE, or remove it from the search space\n")


def test_set_config_of_a_searched_parameter_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    proc = run_cli("mdn_ramp", "--smoke", "--set", "config.lr=-1", "--storage", str(tmp_path / "results"),
                   "--cache-dir", str(tmp_path / "cache"), timeout=120)
    assert (proc.returncode, proc.stderr, proc.stdout) == (2, SET_REFUSED, "")
    assert list(tmp_path.iterdir()) == []   # refused before Ray starts: no storage, no cache, no run folder


@pytest.mark.parametrize(
    "args, line",
    [
        (["--fix", "lr=5"], "error: --fix lr=5: is 5, expected a number in [0.0003, 0.003] (lr's declared range in "
                            "search_spaces/mdn_ramp.yaml)"),
        (["--fix", "ramp_shape=cubic"], "error: --fix ramp_shape=cubic: is 'cubic', expected one of ['constant', 'step', "
                                        "'linear', 'exponential'] (ramp_shape's choices in search_spaces/mdn_ramp.yaml)"),
        (["--set", "config.weight_decay=-1"], "error: {spec}: config: `weight_decay` is -1.0, expected >= 0"),
    ],
    ids=["fix-out-of-range", "fix-not-a-choice", "set-negative-weight-decay"],
)
def test_bad_fix_and_invalid_config_values_are_one_line(tmp_path: Path, args: list[str], line: str) -> None:
    proc = run_cli("mdn_ramp", "--smoke", *args, "--storage", str(tmp_path / "results"), timeout=120)
    spec = Path(__file__).resolve().parents[3] / "studies" / "mdn_ramp.yaml"
    assert (proc.returncode, proc.stderr) == (2, line.format(spec=spec) + "\n")
    assert list(tmp_path.iterdir()) == []


def test_fix_is_repeatable_on_the_command_line() -> None:
    args = build_parser().parse_args(["mdn_ramp", "--fix", "lr=3e-3", "--fix", "ramp_shape=linear"])
    assert args.fixed == ["lr=3e-3", "ramp_shape=linear"]
    assert build_parser().parse_args(["mdn_ramp"]).fixed == []


def test_run_json_round_trips_the_fixed_values(tmp_path: Path) -> None:
    info = RunInfo(study="mdn_ramp", run="r", invocation=Invocation(smoke=True, overrides=["budget.num_samples=2"],
                                                                     fixed=["lr=2e-3", "ramp_shape=linear"]))
    run_folder.write_run_info(tmp_path, info)
    assert json.loads((tmp_path / "run.json").read_text())["invocation"]["fixed"] == ["lr=2e-3", "ramp_shape=linear"]
    assert run_folder.read_run_info(tmp_path) == info
    # a run.json from before --fix reads with nothing pinned
    (tmp_path / "run.json").write_text('{"study": "mdn_ramp", "run": "old", "invocation": {"smoke": true}}')
    assert run_folder.read_run_info(tmp_path).invocation.fixed == []


# ---------------------------------------------------------------- end to end: a smoke run with --fix

FIXED = ["ramp_shape=linear", "lr=2e-3"]


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    storage = tmp_path_factory.mktemp("results")
    proc = run_cli("mdn_ramp", "--smoke", "--fix", FIXED[0], "--fix", FIXED[1], "--num-samples", "2", "--num-cpus", "2",
                   "--storage", str(storage), "--cache-dir", str(cache_dir), "--run", "pinned")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage / "mdn_ramp" / "pinned"


def test_every_trial_has_the_pinned_values_and_run_json_records_them(fixed_run: Path) -> None:
    configs = [json.loads((d / "params.json").read_text()) for d in sorted(fixed_run.glob("trial_*"))]
    assert len(configs) == 2
    for config in configs:
        assert config["lr"] == 2e-3 and config["ramp_shape"] == "linear"
        assert {"initial_weight", "ramp_start", "ramp_length"} <= set(config)   # linear: every ramp knob is searched
    info = json.loads((fixed_run / "run.json").read_text())
    assert info["invocation"]["fixed"] == FIXED
    assert info["params"] == ["initial_weight", "ramp_start", "ramp_length"]
    from studies.driver import spec_of_run

    spec = spec_of_run(fixed_run, for_training=False)   # what --report, --resume and --designed read
    assert spec.fixed == {"ramp_shape": "linear", "lr": 2e-3} and spec.config["lr"] == 2e-3
    assert [p.name for p in spec.params] == ["initial_weight", "ramp_start", "ramp_length"]


def test_report_applies_the_recorded_fix_and_refuses_another(fixed_run: Path) -> None:
    storage = str(fixed_run.parent.parent)
    proc = run_cli("mdn_ramp", "--report", "--run", "pinned", "--storage", storage, "--fix", "lr=0.002", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lr" not in (fixed_run / "tables" / "trials.csv").read_text().splitlines()[0].split(",")
    proc = run_cli("mdn_ramp", "--report", "--run", "pinned", "--storage", storage, "--fix", "lr=1e-3", timeout=120)
    assert (proc.returncode, proc.stderr) == (2, "error: --fix lr=1e-3: run pinned was started with --fix "
                                                 "ramp_shape=linear --fix lr=2e-3; --report keeps those (drop --fix, or "
                                                 "start a new run)\n")


def test_resume_and_designed_refuse_other_fixed_values(fixed_run: Path, cache_dir: Path) -> None:
    storage = str(fixed_run.parent.parent)
    before = (fixed_run / "run.json").read_text()
    for flags, flag in ((["--resume"], "--resume"), (["--smoke", "--designed"], "--designed --run")):
        for fix in ("lr=1e-3", "ramp_start=0.1"):
            proc = run_cli("mdn_ramp", *flags, "--run", "pinned", "--storage", storage, "--cache-dir", str(cache_dir),
                           "--fix", fix, timeout=120)
            assert (proc.returncode, proc.stderr) == (2, f"error: --fix {fix}: run pinned was started with --fix "
                                                         f"ramp_shape=linear --fix lr=2e-3; {flag} keeps those (drop "
                                                         "--fix, or start a new run)\n")
    assert (fixed_run / "run.json").read_text() == before


def test_list_names_every_objective(capsys) -> None:  # noqa: ANN001
    from studies.cli import main
    from studies.spec.study import known_studies, load_spec

    assert main(["--list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for name, path in known_studies().items():
        spec = load_spec(path)
        assert ", ".join(f"{m} ({d})" for m, d in zip(spec.metrics, spec.modes)) in lines[name], name
