"""A validated StudySpec -> a ray.tune.Tuner (OptunaSearch + ASHA)."""

from __future__ import annotations

import importlib
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter

from studies._compat import fit_interrupted, tune_pickles_checked, tuner_search_alg
from studies.errors import UserError
from studies.quiet import environ, quiet_optuna, quiet_tune
from studies.runs.optuna_store import sqlite_storage
from studies.runs.remote_storage import RemoteStore
from studies.runs.run_folder import OPTUNA_FILE, RunFolder
from studies.runs.run_signing import TUNER_FILE, check_bytes, check_copy, sign_bytes, signing_key
from studies.spec.screening_design import design_trials, spec_design
from studies.spec.search_space import define_by_run
from studies.spec.study import StudySpec
from studies.tune.asha_state import AshaRungs
from studies.tune.metric_check import LENIENT_METRICS_ENV, StopWithoutMetric
from studies.tune.mo_asha import MultiObjectiveASHA
from studies.tune.mo_tpe import FullBudgetTPESampler
from studies.tune.node_guard import NodeGuard
from studies.tune.optuna_bridge import STUDY_FILE_ENV, TruthfulOptunaSearch
from studies.tune.progress import ProgressLines, Rungs
from studies.tune.run_folder_callbacks import BucketGuard, BucketPush, FreeSpaceGuard, RunSigner
from studies.tune.search_generator import TrialCountedGenerator
from studies.tune.stall_guard import StallGuard
from studies.tune.tensorboard_logger import TBXScalarsCallback

OPTUNA_DB = OPTUNA_FILE
TIME_ATTR = "epoch"


def import_trainable(target: str) -> Callable[..., Any]:
    """``package.module:function`` -> the function (imported here, on the driver,
    so a typo fails before any trial starts)."""
    module_name, _, attr = target.partition(":")
    added = os.getcwd() not in sys.path  # "importable from the working directory", as on the workers
    if added:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"trainable {target!r}: cannot import module {module_name!r} ({exc})") from None
    except SyntaxError as exc:
        raise UserError(f"trainable {target!r}: {exc.filename}:{exc.lineno}: SyntaxError: {exc.msg}") from None
    except Exception as exc:  # the module's own code raised while it was imported
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise UserError(f"trainable {target!r}: importing {module_name!r} raised {exc.__class__.__name__}: {exc} "
                        f"({where.filename}:{where.lineno})") from None
    finally:  # the module stays imported; the path goes back as it was
        if added:
            sys.path.remove(os.getcwd())
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"trainable {target!r}: module {module_name!r} has no function {attr!r}")
    return fn


def trial_dirname(trial: Any) -> str:
    """Short, stable trial folder names (Tune's default embeds every parameter)."""
    return f"trial_{trial.trial_id}"


def concurrency(spec: StudySpec, cluster: dict[str, float]) -> int:
    """How many trials fit at once. Set explicitly because OptunaSearch with
    reuse_actors and no limit ran every trial on one actor, one after another
    (measured with Ray 2.60 on 2 CPUs)."""
    r = spec.resources
    fits = [math.floor(cluster.get("CPU", 1) / r.cpus_per_trial + 1e-9)]
    if r.gpus_per_trial > 0:
        fits.append(math.floor(cluster.get("GPU", 0) / r.gpus_per_trial + 1e-9))
    n = max(1, min(fits))
    if r.max_concurrent:
        n = min(n, r.max_concurrent)
    return min(n, spec.budget.num_samples)


def trial_resources(spec: StudySpec) -> dict[str, float]:
    r = spec.resources
    return {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial}


def make_trainable(spec: StudySpec, data: dict[str, Any] | None) -> Any:
    """A bundled family's trainable gets its data set and name through the object
    store; a user's trainable is imported from ``module:function`` and reads its own data."""
    if spec.family:
        from trainables.family import train_family

        fn: Any = tune.with_parameters(train_family, data=data, family=spec.family)
    else:
        assert spec.trainable is not None  # load_spec requires a family or a trainable
        fn = import_trainable(spec.trainable)
    return tune.with_resources(fn, trial_resources(spec))


def build_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """The spec's ``search:`` block as an Optuna sampler. With ``startup: design``
    TPE / GP wait for the reference point and the design's rows (1 + N trials),
    then take over at once: the design is their start."""
    s = spec.search
    samplers = optuna.samplers
    startup = s.n_startup_trials if s.n_startup_trials is not None else 10  # load_spec fills it for tpe and gp
    if s.startup == "design":
        startup = 1 + design_trials(spec)
    if s.sampler == "tpe":
        extra: dict[str, Any] = {} if s.multivariate is None else {"multivariate": s.multivariate}  # None: Optuna's default
        if spec.multi_objective:   # only full-budget trials may be TPE's "good" ones (studies.tune.mo_tpe says why)
            return FullBudgetTPESampler(seed=s.seed, n_startup_trials=startup, group=s.group, **extra)
        return samplers.TPESampler(seed=s.seed, n_startup_trials=startup, group=s.group, **extra)
    if s.sampler == "random":
        return samplers.RandomSampler(seed=s.seed)
    if s.sampler == "qmc":
        return samplers.QMCSampler(seed=s.seed, scramble=True)  # an unscrambled Sobol sequence ignores the seed
    if s.sampler == "gp":
        return samplers.GPSampler(seed=s.seed, n_startup_trials=startup)
    if s.sampler == "cmaes":
        # Under ASHA most trials end PRUNED; CMA-ES would otherwise learn only from the few that ran to the end.
        return samplers.CmaEsSampler(seed=s.seed, consider_pruned_trials=True)
    if s.sampler == "nsga2":
        extra = {} if s.population_size is None else {"population_size": s.population_size}
        return samplers.NSGAIISampler(seed=s.seed, **extra)
    raise ValueError(f"unknown sampler {s.sampler!r}")  # load_spec refuses it first


def build_searcher(spec: StudySpec, run_dir: Path) -> TruthfulOptunaSearch:
    """For a new run only: OptunaSearch enqueues ``points_to_evaluate`` into the
    Optuna study when it is built, and Tuner.restore unpickles the searcher
    instead of building it, so a resumed run does not measure the points twice.
    The points: the reference point (trial 0), then with ``startup: design`` the
    screening design's rows (trials 1..N; each with only its active parameters,
    as define-by-run samples them). The report recomputes the same rows from the
    run folder's spec (``spec_design``), so nothing else records them."""
    with quiet_optuna():  # the searcher creates (or loads) the Optuna study here
        return TruthfulOptunaSearch(
            space=define_by_run(spec.params),
            metric=spec.metrics if spec.multi_objective else spec.metric,
            mode=spec.modes if spec.multi_objective else spec.mode,
            # trial 0: the baseline is always measured; then the design, if any
            points_to_evaluate=[spec.reference_point(), *spec_design(spec)],
            sampler=build_sampler(spec),
            study_name=spec.name,
            storage=sqlite_storage(str(RunFolder(run_dir).optuna_db), fsync=False),
            max_epochs=spec.budget.max_epochs,
            time_attr=TIME_ATTR,
            study_seed=spec.seed,
        )


def build_scheduler(spec: StudySpec) -> ASHAScheduler | MultiObjectiveASHA:
    """ASHA on the study's metric, or for several objectives multi-objective ASHA (studies.tune.mo_asha)."""
    b = spec.budget
    if spec.multi_objective:
        return MultiObjectiveASHA(time_attr=TIME_ATTR, metrics=spec.metrics, modes=spec.modes, max_t=b.max_epochs,
                                  grace_period=b.grace_period, reduction_factor=b.reduction_factor)
    return ASHAScheduler(time_attr=TIME_ATTR, max_t=b.max_epochs, grace_period=b.grace_period,
                         reduction_factor=b.reduction_factor)


# How long Tune waits for one upload of its experiment snapshot into a bucket (its default: 30 min).
# The snapshot is a few MB; a bucket that stops answering without refusing (a network black hole)
# would otherwise hold the study's clean stop for half an hour. Trials upload their checkpoints themselves.
BUCKET_SYNC_TIMEOUT_S = 120


def tune_storage(run_dir: Path, remote: RemoteStore | None) -> dict[str, Any]:
    """Where Tune writes ``run_dir``'s parent: itself, or for a run in a bucket the bucket."""
    if remote is None:
        return {"storage_path": str(run_dir)}
    return {**remote.tune_storage(run_dir), "sync_config": tune.SyncConfig(sync_timeout=BUCKET_SYNC_TIMEOUT_S)}


def run_config(spec: StudySpec, run_dir: Path, callbacks: list[Any], remote: RemoteStore | None = None) -> tune.RunConfig:
    return tune.RunConfig(
        name=run_dir.name,
        **tune_storage(run_dir.parent, remote),
        failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures),
        # Keep every checkpoint: they are small, and a num_to_keep forces an
        # experiment snapshot after every few checkpoints (slow, and noisy).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        stop=StopWithoutMetric(spec.metrics if spec.multi_objective else spec.metric),
        callbacks=callbacks,
        verbose=0,  # studies.tune.progress prints plain lines instead of Tune's boxes
    )


def progress_callback(spec: StudySpec, *, workers: int, early_stopping: bool = True, num_samples: int | None = None,
                      show_best: bool = True) -> ProgressLines:
    b = spec.budget
    rungs = Rungs(b.grace_period, b.reduction_factor, b.max_epochs) if early_stopping else None
    return ProgressLines(metric=spec.metric, mode=spec.mode, num_samples=num_samples or b.num_samples,
                         max_epochs=b.max_epochs, workers=workers, rungs=rungs, show_best=show_best and not spec.multi_objective)


def build_tuner(spec: StudySpec, run_dir: Path, data: dict[str, Any] | None, *, max_concurrent: int,
                remote: RemoteStore | None = None, trainable: Any | None = None) -> tune.Tuner:
    """``trainable``: run this instead of the spec's (benchmarks/gpu_packing.py wraps the family's
    trainable to record each trial's device); it must carry its resources (``tune.with_resources``)."""
    scheduler = build_scheduler(spec)
    # Tune's per-epoch scalars stay; the HParams record is ours alone (hparams/), so each trial shows once.
    callbacks = [progress_callback(spec, workers=max_concurrent), TBXScalarsCallback(), AshaRungs(scheduler), RunSigner(),
                 BucketPush(), BucketGuard(), FreeSpaceGuard(), StallGuard(spec.budget.report_timeout_s), NodeGuard()]
    return tune.Tuner(
        trainable if trainable is not None else make_trainable(spec, data),
        param_space=spec.trial_config(),
        tune_config=tune.TuneConfig(
            # Ray's Tuner takes one metric and mode only: with several objectives the searcher and the
            # scheduler each hold the list themselves.
            metric=None if spec.multi_objective else spec.metric,
            mode=None if spec.multi_objective else spec.mode,
            # Wrapped here as Tune would wrap it (max_concurrent_trials), in a generator whose trial
            # count a resume takes from the trial states (studies.tune.search_generator says why).
            search_alg=TrialCountedGenerator(ConcurrencyLimiter(build_searcher(spec, run_dir), max_concurrent=max_concurrent)),
            scheduler=scheduler,
            num_samples=spec.budget.num_samples,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=run_config(spec, run_dir, callbacks, remote),
    )


@contextmanager
def pickles_signed(run_dir: Path, *, check: bool) -> Iterator[None]:
    """While Tune makes or restores the Tuner and runs it: the ``tuner.pkl`` it writes is
    signed as the bytes it pickled, and with ``check`` (a resume of a folder not given
    to --trust-run-folder) what it unpickles from the run folder is checked as the very
    bytes it reads (studies._compat.tune_pickles_checked; the snapshot's other files in
    Tune's private copy, through ``restore_tuner``'s ``checker``)."""
    key = signing_key()

    def checked(pattern: str, data: bytes) -> None:
        newest = max(run_dir.glob(pattern), default=run_dir / pattern)   # the one Tune reads: the newest by name
        check_bytes(run_dir, str(newest), pattern, data, key)

    with tune_pickles_checked(checked if check else None, lambda data: sign_bytes(run_dir, TUNER_FILE, data, key)):
        yield


def copy_checker(run_dir: Path) -> Callable[[Path], None]:
    """``restore_tuner``'s ``checker`` for a folder that is checked, not trusted."""
    key = signing_key()
    return lambda copy_dir: check_copy(copy_dir, run_dir, key)


def restore_tuner(spec: StudySpec, run_dir: Path, data: dict[str, Any] | None,
                  remote: RemoteStore | None = None, checker: Callable[[Path], None] | None = None) -> tune.Tuner:
    """Continue an interrupted run: finished trials are kept, unfinished ones
    resume from their last checkpoint, errored ones are retried.

    ``run_dir`` is the run folder as this machine sees it now (copied, moved, or a
    bucket's mirror at another path); nothing recorded where the run started is
    trusted. Tune re-points the restored trials and their checkpoints itself; the
    searcher's study file (unpickled here from tuner.pkl, and again in fit from the
    snapshot) follows ``STUDY_FILE_ENV``, and the generator's experiment follows
    ``resume_at``. ``checker``: TrialCountedGenerator.resume_at's ``check_copy``."""
    where = tune_storage(run_dir, remote)
    with environ(**{STUDY_FILE_ENV: str(RunFolder(run_dir).optuna_db)}):
        tuner = tune.Tuner.restore(where["storage_path"], make_trainable(spec, data), resume_unfinished=True,
                                   resume_errored=True, param_space=spec.trial_config(),
                                   storage_filesystem=where.get("storage_filesystem"))
    generator = tuner_search_alg(tuner)
    if isinstance(generator, TrialCountedGenerator):
        generator.resume_at(where["storage_path"], where.get("storage_filesystem"), checker)
    return tuner


def fit(tuner: tune.Tuner, optuna_db: Path | None = None) -> tuple[Any, bool]:
    """Run the tuner; return its ResultGrid and whether a stop signal (Ctrl+C,
    SIGINT, SIGUSR1) interrupted it. Tune itself marks every trial TERMINATED at
    clean-up either way. ``optuna_db``: where a restored searcher finds its study."""
    where = {STUDY_FILE_ENV: str(optuna_db)} if optuna_db is not None else {}
    with quiet_tune(), environ(**LENIENT_METRICS_ENV, **where):
        return fit_interrupted(tuner.fit)
