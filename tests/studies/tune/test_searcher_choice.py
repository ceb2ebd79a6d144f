"""The spec's `search:` block builds the Optuna sampler, and every new run measures
the reference point first (Optuna trial 0), once, even across a resume."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle as cloudpickle
from optuna.trial import TrialState

from studies._compat import searcher_study
from studies.runs.optuna_store import trial_seed
from studies.spec.study import STUDIES_DIR, load_spec
from studies.tune.optuna_bridge import TruthfulOptunaSearch
from studies.tune.tuner import OPTUNA_DB, build_sampler, build_searcher
from tests.conftest import run_cli

BUNDLED_SPEC = STUDIES_DIR / "mdn_ramp.yaml"
CONTINUOUS_SPACE = """\
lr:        {type: float, low: 3.0e-4, high: 3.0e-3, log: true}
dropout:   {type: float, low: 0.0, high: 0.3}
n_layers:  {type: int, low: 1, high: 3}
"""


def _spec(*overrides: str, tmp_path: Path | None = None):
    if tmp_path is None:
        return load_spec(BUNDLED_SPEC, smoke=True, overrides=list(overrides))
    (tmp_path / "space.yaml").write_text(CONTINUOUS_SPACE)
    return load_spec(BUNDLED_SPEC, smoke=True, search_space_path=tmp_path / "space.yaml",
                     overrides=["ablation.factors=[lr]", "ablation.baseline={}", "ablation.leave_one_out.sweep=[]",
                                *overrides])


def _suggestions(spec, run_dir: Path, n: int, *, with_trial_seed: bool = False) -> list[dict]:
    """The sampled parameters of the first n suggestions (and each trial's own seed if asked)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    searcher = build_searcher(spec, run_dir)
    configs = [searcher.suggest(f"t{i}") for i in range(n)]
    return configs if with_trial_seed else [{k: v for k, v in c.items() if k != "trial_seed"} for c in configs]


@pytest.mark.parametrize(
    "sampler, cls",
    [("tpe", optuna.samplers.TPESampler), ("random", optuna.samplers.RandomSampler), ("qmc", optuna.samplers.QMCSampler),
     ("gp", optuna.samplers.GPSampler), ("cmaes", optuna.samplers.CmaEsSampler), ("nsga2", optuna.samplers.NSGAIISampler)],
)
def test_each_sampler_is_built_from_the_spec(tmp_path, sampler, cls):
    spec = _spec(f"search.sampler={sampler}", "search.seed=11", tmp_path=tmp_path)
    searcher = build_searcher(spec, tmp_path)
    assert type(searcher) is TruthfulOptunaSearch
    assert type(searcher_study(searcher).sampler) is cls
    # the searcher is pickled into the run folder by Tune
    assert type(searcher_study(cloudpickle.loads(cloudpickle.dumps(searcher))).sampler) is cls


def test_sampler_options_reach_optuna():
    tpe = build_sampler(_spec("search.n_startup_trials=7", "search.multivariate=true", "search.group=true"))
    assert (tpe._n_startup_trials, tpe._multivariate, tpe._group) == (7, True, True)
    # the default: the reference point and a 3-row start design (half of the 6 smoke trials), then TPE
    assert build_sampler(_spec())._n_startup_trials == 4
    assert build_sampler(_spec("search.startup=random"))._n_startup_trials == 6   # a random start: all 6 smoke trials
    assert build_sampler(_spec())._multivariate is None            # Optuna's own default, as before
    assert build_sampler(_spec("search.sampler=gp", "search.n_startup_trials=3"))._n_startup_trials == 3
    assert build_sampler(_spec("search.sampler=qmc"))._scramble is True  # else the seed would not matter


@pytest.mark.parametrize("sampler", ["tpe", "random", "qmc", "gp", "nsga2"])
def test_the_seed_decides_the_suggestions(tmp_path, sampler):
    # TPE and GP are random for their first n_startup_trials, so the first suggestions show the seed.
    runs = {name: _suggestions(_spec(f"search.sampler={sampler}", *extra), tmp_path / name, 4, with_trial_seed=True)
            for name, extra in {"a": ["seed=3"], "b": ["search.seed=3"], "c": ["search.seed=4"]}.items()}
    # Each trial's own seed comes from the study seed (not the sampler's) and its Optuna trial number.
    assert [c.pop("trial_seed") for c in runs["a"]] == [trial_seed(3, n) for n in range(4)]
    assert [c.pop("trial_seed") for c in runs["b"]] == [c.pop("trial_seed") for c in runs["c"]] == [trial_seed(0, n) for n in range(4)]
    assert runs["a"] == runs["b"]                    # search.seed defaults to the spec's seed
    assert runs["a"][1:] != runs["c"][1:]
    assert runs["a"][0] == runs["c"][0]              # trial 0 is the reference point whatever the seed


def test_random_and_tpe_differ_after_the_startup_trials(tmp_path):
    """With n_startup_trials 0, TPE itself proposes the first configs: it is not a random sampler in disguise."""
    tpe = _suggestions(_spec("search.n_startup_trials=0"), tmp_path / "tpe", 3)
    rnd = _suggestions(_spec("search.sampler=random"), tmp_path / "random", 3)
    assert tpe[0] == rnd[0] and tpe[1:] != rnd[1:]


@pytest.mark.parametrize("sampler", ["tpe", "random", "qmc", "gp"])
def test_trial_0_is_the_reference_point(tmp_path, sampler):
    spec = _spec(f"search.sampler={sampler}", "ablation.baseline.ramp_shape=linear")
    first, *_ = _suggestions(spec, tmp_path, 2)
    assert first == spec.reference_point()
    study = optuna.load_study(study_name=spec.name, storage=f"sqlite:///{tmp_path / OPTUNA_DB}")
    assert study.trials[0].number == 0 and study.trials[0].params == spec.reference_point()


def test_cmaes_trial_0_is_the_reference_point(tmp_path):
    spec = _spec("search.sampler=cmaes", tmp_path=tmp_path)
    assert spec.reference_point() == {"lr": pytest.approx(3e-4 * 10 ** 0.5), "dropout": 0.15, "n_layers": 2}
    first, second = _suggestions(spec, tmp_path / "run", 2)
    assert first == spec.reference_point() and second != first


def test_a_restored_searcher_does_not_enqueue_again(tmp_path):
    """Tuner.restore unpickles the searcher (tuner.pkl) instead of building it, so the
    reference point is not put into the Optuna study a second time (the design rows
    of the default start: tests/studies/spec/test_screening_design.py)."""
    spec = _spec("search.startup=random")
    searcher = build_searcher(spec, tmp_path)
    study = searcher_study(searcher)

    def waiting() -> int:
        return len(study.get_trials(states=(TrialState.WAITING,)))

    assert waiting() == 1
    pickled = cloudpickle.dumps(searcher)           # what Tune writes before the first trial
    searcher.suggest("t0")
    assert waiting() == 0
    restored = cloudpickle.loads(pickled)
    restored.save(str(tmp_path / "searcher.pkl"))   # and the searcher's own save / restore
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert waiting() == 0 and len(study.get_trials()) == 1
    assert restored.suggest("t1") != spec.reference_point()


def test_a_real_study_measures_the_reference_point_first(tmp_path, cache_dir):
    """Through the CLI: --set search.sampler, and Optuna's trial 0 has exactly the reference point's params."""
    overrides = ["search.sampler=random", "ablation.baseline.ramp_shape=linear", "budget.max_epochs=2", "budget.grace_period=1"]
    args = [a for o in overrides for a in ("--set", o)]
    proc = run_cli("mdn_ramp", "--smoke", *args, "--num-samples", "3", "--storage", str(tmp_path), "--cache-dir", str(cache_dir),
                   "--run", "ref", "--num-cpus", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "mdn_ramp" / "ref"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and all(o in info["invocation"]["overrides"] for o in overrides)
    expected = load_spec(BUNDLED_SPEC, smoke=True, overrides=overrides).reference_point()
    assert set(expected) == {"ramp_shape", "initial_weight", "ramp_start", "ramp_length", "lr"}
    trials = optuna.load_study(study_name="mdn_ramp", storage=f"sqlite:///{run_dir / OPTUNA_DB}").get_trials()
    assert len(trials) == 3
    first = next(t for t in trials if t.number == 0)
    assert first.params == expected
    assert first.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert sum(t.params == expected for t in trials) == 1


def test_a_restored_searcher_writes_to_the_study_file_it_is_given(tmp_path, monkeypatch):
    """A searcher pickled in one run folder and restored where the folder now is
    (moved, or mirrored from a bucket on another machine) tells the study there,
    not the one at the path it was pickled with."""
    from studies.tune.optuna_bridge import STUDY_FILE_ENV

    spec = _spec("search.startup=random")   # only the reference point enqueued
    first, moved = tmp_path / "first", tmp_path / "moved"
    first.mkdir()
    searcher = build_searcher(spec, first)
    searcher.suggest("t0")
    searcher.suggest("t1")
    searcher.save(str(tmp_path / "searcher-state.pkl"))
    moved.mkdir()
    (moved / OPTUNA_DB).write_bytes((first / OPTUNA_DB).read_bytes())
    monkeypatch.setenv(STUDY_FILE_ENV, str(moved / OPTUNA_DB))
    restored = cloudpickle.loads(cloudpickle.dumps(searcher))
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    restored.on_trial_result("t0", {spec.metric: 0.5, "epoch": 1})
    restored.on_trial_complete("t0", {spec.metric: 0.4, "epoch": spec.budget.max_epochs})
    restored.suggest("t2")

    def states(folder: Path) -> list[str]:
        return [t.state.name for t in optuna.load_study(study_name=spec.name, storage=f"sqlite:///{folder / OPTUNA_DB}").trials]
    assert states(moved) == ["COMPLETE", "RUNNING", "RUNNING"]
    assert states(first) == ["RUNNING", "RUNNING"]   # the old file is left alone


def _synchronous(storage: optuna.storages.RDBStorage) -> int:
    with storage.engine.connect() as con:
        return int(con.exec_driver_sql("PRAGMA synchronous").scalar())


def _rdb(study: optuna.Study) -> optuna.storages.RDBStorage:
    storage = study._storage   # Optuna wraps an RDBStorage in its cache
    return getattr(storage, "_backend", storage)


def test_the_searcher_writes_its_study_file_without_an_fsync_per_write(tmp_path, monkeypatch):
    """SQLite's synchronous=OFF on every connection of the searcher's storage: as built,
    after Tune pickles and restores it, and on the study file a restore is pointed at.
    Other openers of the file (reconcile, rebuild, the report) keep SQLite's default (FULL)."""
    from studies.runs.optuna_store import SQLITE_LOCK_TIMEOUT_S, sqlite_storage
    from studies.tune.optuna_bridge import STUDY_FILE_ENV

    spec = _spec()
    searcher = build_searcher(spec, tmp_path)
    storage = _rdb(searcher_study(searcher))
    assert _synchronous(storage) == 0
    assert storage.engine_kwargs["connect_args"]["timeout"] == SQLITE_LOCK_TIMEOUT_S   # still waits for a lock
    searcher.suggest("t0")
    restored = cloudpickle.loads(cloudpickle.dumps(searcher))
    assert _synchronous(_rdb(searcher_study(restored))) == 0
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / OPTUNA_DB).write_bytes((tmp_path / OPTUNA_DB).read_bytes())
    monkeypatch.setenv(STUDY_FILE_ENV, str(moved / OPTUNA_DB))
    searcher.save(str(tmp_path / "searcher-state.pkl"))
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    assert str(moved) in _rdb(searcher_study(restored)).url and _synchronous(_rdb(searcher_study(restored))) == 0
    assert _synchronous(sqlite_storage(str(tmp_path / OPTUNA_DB))) == 2
