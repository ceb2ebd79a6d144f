"""Bad input matrix: every user-facing input, wrong / empty / huge / malformed.

Each case must give exactly one line on stderr, exit code 2, no traceback, and
leave the disk as it was. Most cases fail before Ray starts, so they run
in-process through ``studies.cli.main``; a few run in a subprocess to prove the
real command line behaves the same.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from studies.cli import main
from tests.conftest import REPO, run_cli


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


@pytest.fixture()
def world(tmp_path: Path) -> dict[str, Path]:
    """A results root with an existing run, data files good and bad, specs good and bad."""
    storage = tmp_path / "results"
    run = storage / "mdn_ramp" / "existing"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"study": "mdn_ramp", "run": "existing", "status": "finished", "started": 1}')
    (run / "precious.txt").write_text("do not touch")
    files = {"storage": storage, "tmp": tmp_path}
    (tmp_path / "malformed.yaml").write_text("family: mdn_motion\nmetric: [unclosed\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    spec = (REPO / "studies" / "mdn_ramp.yaml").read_text()
    (tmp_path / "unknown_key.yaml").write_text(spec + "\nbudgte: {max_epochs: 3}\n")
    (tmp_path / "huge.yaml").write_text(spec.replace("num_samples: 48", "num_samples: 100000000"))
    (tmp_path / "bad_range.yaml").write_text(spec.replace("grace_period: 2 ", "grace_period: 99 "))
    (tmp_path / "bad_space_ref.yaml").write_text(spec.replace("search_space: mdn_ramp", "search_space: nowhere"))
    space = (REPO / "search_spaces" / "mdn_ramp.yaml").read_text()
    (tmp_path / "data_space.yaml").write_text(space + "num_sequences: {type: int, low: 32, high: 96}\n")
    (tmp_path / "data_field.yaml").write_text(spec.replace("search_space: mdn_ramp", "search_space: data_space.yaml"))
    (tmp_path / "garbage.h5").write_bytes(b"not an hdf5 file at all")
    with h5py.File(tmp_path / "misshaped.h5", "w") as f:
        f["keypoints"] = np.zeros((4, 10, 17), np.float32)
        f["emotion"] = np.zeros((4, 10, 4), np.float32)
        f["lengths"] = np.full(4, 10)
        f["label"] = np.zeros(4, np.int64)
    (tmp_path / "alias_bomb.yaml").write_text(
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "family: mdn_motion\n")
    (tmp_path / "duplicate.yaml").write_text(spec + "\nmetric: val_nll\n")
    (tmp_path / "int_key.yaml").write_text(spec + "\n42: answer\n")
    (tmp_path / "deep.yaml").write_text("family: " + "[" * 3000 + "]" * 3000 + "\n")
    (tmp_path / "inf_rf.yaml").write_text(spec.replace("reduction_factor: 3", "reduction_factor: .inf"))
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "dup_space.yaml").write_text("bs: {type: categorical, choices: [1, 1.0, 2]}\n")
    (tmp_path / "dup_choices.yaml").write_text(spec.replace("search_space: mdn_ramp", "search_space: dup_space.yaml"))
    (tmp_path / "never_space.yaml").write_text(space + "ramp_end: {type: float, low: 0.5, high: 1.0, "
                                               "when: {ramp_shape: [constant], ramp_length: [0.2]}}\n")
    (tmp_path / "never_active.yaml").write_text(spec.replace("search_space: mdn_ramp", "search_space: never_space.yaml"))
    (tmp_path / "many_space.yaml").write_text(f"bs: {{type: categorical, choices: {list(range(10001))}}}\n")
    (tmp_path / "many_choices.yaml").write_text(spec.replace("search_space: mdn_ramp", "search_space: many_space.yaml"))
    (tmp_path / "syntax_pkg").mkdir()
    (tmp_path / "syntax_pkg" / "__init__.py").write_text("")
    (tmp_path / "syntax_pkg" / "bad.py").write_text("def train(config):\n    return (\n")
    (tmp_path / "syntax_pkg" / "raises.py").write_text("import math\nVALUE = math.sqrt(-1)\n")
    for name in ("bad", "raises"):
        (tmp_path / f"user_{name}.yaml").write_text(
            f"trainable: syntax_pkg.{name}:train\nmetric: loss\nmode: min\nsearch_space: user_space.yaml\n")
    (tmp_path / "user_space.yaml").write_text("x: {type: float, low: 0.0, high: 1.0}\n")
    with h5py.File(tmp_path / "target.h5", "w") as f:
        f["keypoints"] = np.zeros((4, 10, 17, 2), np.float32)
    with h5py.File(tmp_path / "linked.h5", "w") as f:
        f["keypoints"] = h5py.ExternalLink(str(tmp_path / "target.h5"), "/keypoints")
        f["emotion"] = np.zeros((4, 10, 4), np.float32)
        f["lengths"], f["label"] = np.full(4, 10), np.zeros(4, np.int64)
    with h5py.File(tmp_path / "missing.h5", "w") as f:
        f["keypoints"] = np.zeros((4, 10, 17, 2), np.float32)
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        kp = np.zeros((4, 10, 17, 2), np.float32)
        kp[1, 2, 3, 0] = np.nan
        f["keypoints"], f["emotion"] = kp, np.zeros((4, 10, 4), np.float32)
        f["lengths"], f["label"] = np.full(4, 10), np.zeros(4, np.int64)
    return files


CASES = [
    # (id, argv with {tmp} / {storage}, fragment expected in the one line)
    ("unknown study", ["nonexistent_study"], "unknown study 'nonexistent_study'; known studies: "),
    ("empty study name", [""], "no study given"),
    ("no study", [], "no study given"),
    ("missing spec file", ["{tmp}/nope.yaml"], "no such study spec file"),
    ("malformed YAML", ["{tmp}/malformed.yaml"], "malformed YAML at line 3"),
    ("empty YAML", ["{tmp}/empty.yaml"], "the file is empty"),
    ("YAML list", ["{tmp}/list.yaml"], "expected a mapping of keys at the top level"),
    ("binary YAML", ["{tmp}/binary.yaml"], "binary.yaml"),
    ("unknown spec key", ["{tmp}/unknown_key.yaml"], "budgte: unknown key"),
    ("huge num_samples", ["{tmp}/huge.yaml"], "budget.num_samples: is 100000000"),
    ("grace > max_epochs", ["{tmp}/bad_range.yaml"], "budget.grace_period: is 99"),
    ("missing search space", ["{tmp}/bad_space_ref.yaml"], "nowhere.yaml: no such file"),
    ("searched data field", ["{tmp}/data_field.yaml"], "num_sequences: a data field of family mdn_motion"),
    ("--set unknown key", ["mdn_ramp", "--set", "nope=1"], "--set nope=1: unknown key 'nope'"),
    ("--set malformed", ["mdn_ramp", "--set", "budget.max_epochs"], "expected key=value"),
    ("--set empty", ["mdn_ramp", "--set", ""], "expected key=value"),
    ("--set wrong type", ["mdn_ramp", "--set", "budget.max_epochs=many"], "budget: `max_epochs` is 'many'"),
    ("--set huge", ["mdn_ramp", "--set", "budget.max_epochs=10000000000000"], "budget.max_epochs: is 10000000000000"),
    ("--set bad config key", ["mdn_ramp", "--set", "config.n_head=2"], "config: unknown key(s) ['n_head']"),
    ("--set bad choice", ["mdn_ramp", "--set", "config.sampling=beam"], "`sampling` is 'beam'"),
    ("--set negative seed", ["mdn_ramp", "--set", "seed=-1"], "seed: expected a non-negative integer"),
    ("--set seed too big", ["mdn_ramp", "--set", "seed=4294967296"],
     "mdn_ramp.yaml: seed: expected a non-negative integer below 2**31 (2147483648; seeds derived from it must stay "
     "below numpy's 2**32), found 4294967296"),
    ("--set NaN config", ["mdn_ramp", "--set", "config.grad_clip=.nan"], "config.grad_clip: is nan, expected a finite number"),
    ("when that never holds", ["{tmp}/never_active.yaml"],
     "never_space.yaml: ramp_end.when: ramp_shape in ['constant'] and ramp_length in [0.2] never hold in the same trial "
     "(ramp_length is active only when ramp_shape is in ['linear', 'exponential']), so ramp_end can never be active"),
    ("10,001 categorical choices", ["{tmp}/many_choices.yaml"], "many_space.yaml: bs.choices: has 10001 choices, expected at most "),
    ("--num-samples 0", ["mdn_ramp", "--num-samples", "0"], "--num-samples: is 0"),
    ("--cpus-per-trial 0", ["mdn_ramp", "--cpus-per-trial", "0"], "resources.cpus_per_trial: is 0"),
    ("--gpus-per-trial 1.5", ["mdn_ramp", "--gpus-per-trial", "1.5"], "resources.gpus_per_trial: is 1.5"),
    ("--max-concurrent -1", ["mdn_ramp", "--max-concurrent", "-1"], "--max-concurrent: is -1"),
    ("--data missing", ["mdn_ramp", "--data", "{tmp}/none.h5"], "no such file"),
    ("--data garbage", ["mdn_ramp", "--data", "{tmp}/garbage.h5"], "not a readable HDF5 file"),
    ("--data mis-shaped", ["mdn_ramp", "--data", "{tmp}/misshaped.h5"], "dataset 'keypoints' has shape (4, 10, 17), expected (N, T, 17, 2)"),
    ("--data missing dataset", ["mdn_ramp", "--data", "{tmp}/missing.h5"], "missing dataset 'emotion'"),
    ("--data NaN", ["mdn_ramp", "--data", "{tmp}/nan.h5"], "contains NaN or inf"),
    ("--storage unknown URI", ["mdn_ramp", "--storage", "nosuch://bucket/x"], "not a storage URI pyarrow can open"),
    ("--storage no bucket", ["mdn_ramp", "--storage", "s3://"], "--storage s3://: names no bucket; expected s3://BUCKET/PREFIX"),
    ("--data external link", ["mdn_ramp", "--data", "{tmp}/linked.h5"], "dataset 'keypoints' is a ExternalLink (to "),
    ("--storage empty", ["mdn_ramp", "--storage", ""], "--storage: is empty, expected a folder path"),
    ("--storage a file", ["mdn_ramp", "--storage", "{tmp}/a_file/results"], "a_file is a file, expected a folder"),
    ("--cache-dir a file", ["mdn_ramp", "--cache-dir", "{tmp}/a_file"], "a_file is a file, expected a folder"),
    ("--run a path", ["mdn_ramp", "--run", "a/b"], "--run a/b: expected a plain folder name"),
    ("--run up", ["mdn_ramp", "--run", "../x"], "--run ../x: expected a plain folder name"),
    ("--run absolute", ["mdn_ramp", "--run", "/tmp/x"], "--run /tmp/x: expected a plain folder name"),
    ("--seed too big", ["mdn_ramp", "--seed", "2147483648"], "--seed 2147483648: expected 0 <= seed < 2**31"),
    ("YAML aliases", ["{tmp}/alias_bomb.yaml"], "aliases (*name) are not allowed in a spec"),
    ("YAML duplicate key", ["{tmp}/duplicate.yaml"], "duplicate key 'metric' (first at line"),
    ("non-string top-level key", ["{tmp}/int_key.yaml"], "42: a top-level key must be a name"),
    ("deeply nested YAML", ["{tmp}/deep.yaml"], "nested too deeply to be a spec"),
    ("infinite reduction_factor", ["{tmp}/inf_rf.yaml"], "budget: `reduction_factor` is inf"),
    ("NaN bin edges", ["mdn_ramp", "--set", "ablation.bins.lr=[1.0e-3, .nan]"], "ablation.bins.lr: expected an increasing list"),
    ("equal categorical choices", ["{tmp}/dup_choices.yaml"], "bs.choices: has duplicates (equal values): [1, 1.0, 2]"),
    ("existing run", ["mdn_ramp", "--run", "existing"], "run folder already exists; continue it with --resume"),
    ("resume missing run", ["mdn_ramp", "--resume", "--run", "ghost"], "no such run to resume"),
    ("report missing run", ["mdn_ramp", "--report", "--run", "ghost"], "no such run"),
    ("report no runs", ["nonexistent_study"], "unknown study"),
    ("unreachable address", ["mdn_ramp", "--address", "127.0.0.1:1"], "cannot reach a Ray cluster there"),
    ("bad address", ["mdn_ramp", "--address", "host:notaport"], "cannot reach a Ray cluster there"),
    ("--set misspelt metric", ["mdn_ramp", "--set", "metric=val_mes"],
     "metric: 'val_mes' is not a metric family mdn_motion reports with this config (it reports: epoch, train_loss, "),
]


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_nothing_changed(world, capsys, argv: list[str], fragment: str) -> None:
    argv = [a.format(tmp=world["tmp"], storage=world["storage"]) for a in argv]
    if "--storage" not in argv:
        argv += ["--storage", str(world["storage"])]
    if "--cache-dir" not in argv:
        argv += ["--cache-dir", str(world["tmp"] / "cache")]
    before = _snapshot(world["tmp"])
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert fragment in err, err
    assert "Traceback" not in err
    after = _snapshot(world["tmp"])
    assert after == before, set(after) ^ set(before)


def test_real_command_line_matches(world) -> None:
    """The same contract through the real executable: one line, code 2, no traceback."""
    proc = run_cli(str(world["tmp"] / "malformed.yaml"), "--storage", str(world["storage"]))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "malformed YAML" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_argparse_errors_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["mdn_ramp", "--num-samples", "many"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: argument --num-samples: invalid int value: 'many'"), err


def test_a_closed_pipe_ends_quietly() -> None:
    """`--list | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    code = ("import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, 1); sys.path.insert(0, '.'); "
            "from studies.cli import main; sys.exit(main(['--list']))")   # stdout: a pipe nobody reads any more
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr


@pytest.mark.parametrize("name, fragment", [("bad", "bad.py:2: SyntaxError: '(' was never closed"),
                                            ("raises", "importing 'syntax_pkg.raises' raised ValueError: math domain error")])
def test_a_trainable_module_that_cannot_import_is_one_line(world, name: str, fragment: str) -> None:
    """Run from the folder that holds the user's package, as a user would."""
    proc = run_cli(str(world["tmp"] / f"user_{name}.yaml"), "--storage", str(world["storage"]), cwd=world["tmp"])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and fragment in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
