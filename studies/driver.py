"""A run's lifecycle: prepare -> launch -> search -> reconcile -> designed ->
report, each a short function of one RunContext. The CLI (studies/cli.py)
parses and dispatches; this runs."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import ConfigError
from core.data.hdf5 import DataFileError
from studies.background import ending_thread
from studies.console import print_answer, print_files, print_summary
from studies.errors import (
    EXIT_ALL_TRIALS_FAILED,
    EXIT_DISK_FULL,
    EXIT_INTERRUPTED,
    EXIT_RAY_LOST,
    EXIT_STORAGE_LOST,
    EXIT_TERMINATED,
    DiskFull,
    RefusedPickle,
    UserError,
)
from studies.runs import run_folder
from studies.runs.free_space import disk_full_reason, low_space
from studies.runs.remote_storage import RemoteStore
from studies.runs.run_folder import Invocation, RunFolder, RunInfo
from studies.runs.run_signing import check_run_folder, sign_run_folder, signing_key
from studies.runs.storage import check_shared_storage
from studies.runs.trials import STATUS_FAILED, RunTrials, TuneTrial, has_tune_snapshot, load_trials, read_tune_trials
from studies.signals import StopSignal, sigterm_stops_cleanly
from studies.spec.study import STUDIES_DIR, StudySpec, check_fixed_unchanged, load_spec

if TYPE_CHECKING:
    from studies.report.write import WrittenReport

SPEC_COPY, SEARCH_SPACE_COPY = run_folder.SPEC_FILE, run_folder.SEARCH_SPACE_FILE


@dataclass
class RunOptions:
    study_path: Path
    storage: Path
    cache_dir: Path
    smoke: bool = False
    overrides: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)   # --fix NAME=VALUE: search-space parameters pinned for the run
    run: str | None = None
    resume: bool = False
    address: str | None = None
    data: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    designed: bool = False   # --designed (old name --confirm): the designed stage with confirmation
    verbose: bool = False
    trust_run_folder: bool = False
    remote: RemoteStore | None = None   # --storage was a bucket URI; ``storage`` is then its local mirror


# What --designed on an existing run may change: the designed stage only (the search it builds on is done).
CONFIRM_OVERRIDABLE = ("ablation.",)


def spec_of_run(run_dir: Path, *, for_training: bool = True, extra: list[str] | tuple[str, ...] = ()) -> StudySpec:
    """The spec exactly as the run used it: the copies in the run folder plus the
    recorded smoke flag, overrides (the search's, then a later --designed's,
    then ``extra``) and --fix values. ``for_training=False`` (reports) skips the
    family check, which imports torch. A run from before ``--set config.X`` on a
    searched X was refused reads as it ran (the searched value won)."""
    folder = RunFolder(run_dir)
    info = folder.info()
    overrides = [*info.invocation.overrides, *info.designed_overrides, *extra]
    return load_spec(folder.spec_copy, smoke=info.invocation.smoke, overrides=overrides,
                     search_space_path=folder.search_space_copy, name=info.study, check_family=for_training,
                     fixed=info.invocation.fixed, refuse_searched_config=False)


def load_family_data(spec: StudySpec, data_path: str | None, cache_dir: Path) -> dict[str, Any] | None:
    """The family's data set, and what its trials share beyond it (``FamilyDef.shared``:
    computed once, cached beside the data): it all reaches the trials through the object store."""
    family = spec.family_info
    if family is None:
        return None
    try:
        config = family.config({**spec.config, "max_epochs": spec.budget.max_epochs})
        arrays = family.load_data(config, data_path=data_path, cache_dir=cache_dir)
        if family.shared is not None:
            from studies.runs.shared_cache import cached_shared

            arrays = {**arrays, **cached_shared(family, config, arrays, data_path=data_path, cache_dir=cache_dir)}
        return arrays
    except DataFileError as exc:
        raise UserError(str(exc)) from None
    except ConfigError as exc:
        raise UserError(f"{spec.path}: config: {exc}") from None
    except Exception as exc:   # the data cache is written before any run folder exists: nothing to --resume yet
        reason = disk_full_reason(exc)
        if reason is None:
            raise
        raise DiskFull(f"--cache-dir {cache_dir}: no space left on device ({reason}); free space there or give "
                       "another --cache-dir, then run the same command again") from None


def _prepare_run_dir(options: RunOptions) -> tuple[Path, StudySpec]:
    study = options.study_path.stem
    if options.resume:
        run_dir = (options.storage / study / options.run) if options.run else run_folder.latest_run(options.storage, study)
        if not (run_dir / run_folder.RUN_FILE).is_file():
            raise UserError(f"{run_dir}: no such run to resume (see `python studies/run.py {study} --runs`)")
        if options.remote is not None:
            options.remote.check_keys_inside(*run_dir.relative_to(options.remote.mirror).parts)
        pull_run(options.remote, run_dir)
        if options.overrides or options.smoke:
            given = " ".join([*(f"--set {o}" for o in options.overrides), *(["--smoke"] if options.smoke else [])])
            raise UserError(f"--resume continues {run_dir} with the spec and overrides recorded with it; {given} would "
                            "change it (start a new run for other settings)")
        check_fixed_unchanged(options.fixed, run_folder.read_run_info(run_dir).invocation.fixed, run_dir.name, "--resume")
        return run_dir, spec_of_run(run_dir)
    spec = load_spec(options.study_path, smoke=options.smoke, overrides=options.overrides, fixed=options.fixed)
    if options.run and (options.storage / study / options.run).exists():
        raise UserError(f"{options.storage / study / options.run}: run folder already exists; continue it with "
                        f"--resume --run {options.run}, or pick another --run name")
    return options.storage / study / (options.run or ""), spec


def pull_run(remote: RemoteStore | None, run_dir: Path, *, to_read: bool = False) -> None:
    """A run in a bucket: its folder (less checkpoints) into the local mirror, the
    bucket's copy winning. A mirror a driver here holds is the newest copy: refused
    (a resume, a confirmation), or with ``to_read`` (a report) read as it is."""
    if remote is None:
        return
    if to_read and run_folder.in_use(run_dir):
        return
    run_folder.check_not_in_use(run_dir)
    remote.pull(*run_dir.relative_to(remote.mirror).parts)


def push_run(remote: RemoteStore | None, run_dir: Path, *, report_only: bool = False) -> None:
    """The driver's own files of a mirrored run into the bucket (see studies.runs.remote_storage)."""
    if remote is not None and (run_dir / run_folder.RUN_FILE).is_file():
        remote.push_own(run_dir, report_only=report_only)


def shown_path(options: RunOptions, path: Path) -> str:
    """A run folder as the user named its storage: the bucket URI for a mirrored one."""
    remote = options.remote
    return str(path) if remote is None else remote.uri_for(path)


def _check_resources(spec: StudySpec, cluster: dict[str, float]) -> None:
    r = spec.resources
    if r.gpus_per_trial > 0 and cluster.get("GPU", 0) <= 0:
        raise UserError(f"resources.gpus_per_trial is {r.gpus_per_trial}, but the Ray cluster has no GPUs "
                        "(use --gpus-per-trial 0 on a CPU machine)")
    if r.gpus_per_trial > cluster.get("GPU", 0) and r.gpus_per_trial > 0:
        raise UserError(f"resources.gpus_per_trial is {r.gpus_per_trial}, more than the cluster's {cluster.get('GPU', 0):g} GPUs")
    if r.cpus_per_trial > cluster.get("CPU", 0):
        raise UserError(f"resources.cpus_per_trial is {r.cpus_per_trial}, more than the cluster's {cluster.get('CPU', 0):g} CPUs")


@dataclass
class RunContext:
    """One run as it goes through the stages."""

    options: RunOptions
    spec: StudySpec
    folder: RunFolder
    data: dict[str, Any] | None
    started: float = 0.0
    cluster: dict[str, float] = field(default_factory=dict)
    concurrent: int = 1
    status: str = "running"
    trials: RunTrials | None = None
    data_path: str | None = None          # the --data file, resolved (None: the synthetic set)
    data_sha256: str | None = None        # its content hash, recorded at the start of a new run
    created: list[Path] = field(default_factory=list)   # folders this run made (removed if it fails to start)
    stop: StopSignal = field(default_factory=StopSignal)
    disk_full: str | None = None   # why the search stopped itself for want of space
    ray_lost: bool = False         # the search stopped itself: no live Ray node left
    bucket_lost: str | None = None   # the search stopped itself: the bucket stopped answering (why)
    start_again: bool = False   # --resume of a run killed while Tune wrote tuner.pkl: nothing ran; started afresh


def run_study(options: RunOptions) -> int:
    try:
        return _run_study(options)
    except DiskFull:
        raise
    except Exception as exc:
        reason = disk_full_reason(exc)
        if reason is None:
            raise
        raise DiskFull(f"{options.storage}: no space left on device ({reason}); free space, then --resume "
                       "(the last whole snapshot is kept)") from None


def _run_study(options: RunOptions) -> int:
    ctx = prepare(options)
    with ExitStack() as held:
        held.enter_context(run_folder.driver_lock(ctx.folder.path))
        if options.resume and not ctx.start_again:
            _rebuild_optuna_db_if_needed(ctx)
        try:
            with launch(ctx, shutdown_later=held):   # Ray stops while the report is written
                tune_ids = search(ctx)
                tune_trials = read_tune_trials(ctx.folder.path)   # Tune's trial folders, read once per run
                if ctx.status == "finished":
                    reconcile(ctx, tune_ids, tune_trials)
                # Optuna's states after reconciling; the designed stage and the report use this table
                ctx.trials = read_trials(ctx.folder, ctx.spec, tune_trials=tune_trials)
                ctx.folder.update(trial_counts=_counts(ctx.trials))
                if ctx.status == "finished" and _every_trial_failed(ctx.trials):
                    ctx.status = "failed"
                    ctx.folder.update(status="failed")
                if ctx.status == "finished" and wants_designed(ctx) and not ctx.trials.trials.empty:
                    designed(ctx)   # a stop signal leaves it "interrupted", for --resume to continue
        except BaseException:
            # A bucket keeps the last snapshot: its optuna.db and Tune's trial states are of one moment,
            # which pushing this mirror's newer optuna.db now would break.
            if not options.resume:  # claimed but nothing written (Ray could not start): leave no trace
                held.close()
                _remove_created(ctx)
            raise
        written = report(ctx)
        push_run(options.remote if ctx.bucket_lost is None else None, ctx.folder.path)
    print_summary(ctx.spec, ctx.folder, ctx.trials, written, ctx.status, verbose=options.verbose,
                  bucket=shown_path(options, ctx.folder.path) if options.remote is not None else None)
    return _exit_code(ctx)


def _every_trial_failed(trials: RunTrials) -> bool:
    df = trials.trials
    return not df.empty and bool((df["status"] == STATUS_FAILED).all())


def continue_command(ctx: RunContext) -> str:
    """The command that continues this run, with the --storage it was run with
    (none for the default results/ folder) and its bucket's URI for a mirrored one."""
    spec, o = ctx.spec, ctx.options
    study = spec.path if spec.path.parent != STUDIES_DIR else spec.name
    default = o.remote is None and o.storage.resolve() == (STUDIES_DIR.parent / "results").resolve()
    storage = "" if default else f" --storage {shown_path(o, o.storage)}"
    return f"python studies/run.py {study} --resume --run {ctx.folder.name}{storage}"


def _exit_code(ctx: RunContext) -> int:
    """0, or what a script around the CLI needs to know (README: "Exit codes"), with its one line."""
    resume = f"`{continue_command(ctx)}`"
    if ctx.disk_full is not None and ctx.status == "interrupted":
        print(f"error: {ctx.disk_full}: the study stopped cleanly; free space, then {resume}", file=sys.stderr)
        return EXIT_DISK_FULL
    if ctx.bucket_lost is not None and ctx.status == "interrupted":
        assert ctx.options.remote is not None
        print(f"error: {ctx.bucket_lost}; the study stopped (the bucket keeps its last snapshot, this machine's "
              f"files of the run are in the local mirror {ctx.folder.path}); once the bucket answers, continue "
              f"with {resume}", file=sys.stderr)
        return EXIT_STORAGE_LOST
    if ctx.ray_lost and ctx.status == "interrupted":
        print("error: Ray lost every node with CPUs (a killed or crashed raylet, see `ray status` and "
              f"/tmp/ray/session_latest/logs); the study stopped cleanly; continue with {resume}", file=sys.stderr)
        return EXIT_RAY_LOST
    if ctx.status == "failed":
        assert ctx.trials is not None
        first = ctx.trials.trials.iloc[0]
        print(f"error: every trial failed; the first ({first['trial_dir']}): {first['error']}", file=sys.stderr)
        return EXIT_ALL_TRIALS_FAILED
    if ctx.status == "interrupted":
        print(f"{'terminated' if ctx.stop.terminated else 'interrupted'}: continue with {resume}", file=sys.stderr)
        return EXIT_TERMINATED if ctx.stop.terminated else EXIT_INTERRUPTED
    return 0


def prepare(options: RunOptions) -> RunContext:
    """Everything that can be refused, refused before Ray starts; then the run folder claimed."""
    run_dir, spec = _prepare_run_dir(options)
    low = low_space(run_dir if options.resume else options.storage)
    if low is not None:
        raise DiskFull(f"{low}; free space, then run again")
    if options.address:
        from studies.tune.ray_session import check_address

        check_address(options.address)  # before anything is built or written
    if options.resume:
        run_folder.check_not_in_use(run_dir)
        start_again = _put_back_cut_short_snapshot(run_dir, options)
        if not options.trust_run_folder and not start_again:
            check_run_folder(run_dir, signing_key())   # before Tune unpickles anything in it
        data_path = recorded_data(RunFolder(run_dir).info(), options.data, "--resume")
        if not start_again:
            _check_optuna_db(RunFolder(run_dir), spec.name)
    else:
        start_again = False
        data_path = str(Path(options.data).resolve()) if options.data else None
    data = load_family_data(spec, data_path, options.cache_dir)   # validated before Ray starts
    if spec.trainable and data_path:
        spec = replace(spec, config={**spec.config, "data_path": data_path})  # a user trainable reads its own file
    if spec.trainable:
        from studies.tune.tuner import import_trainable

        import_trainable(spec.trainable)  # a typo fails here, before Ray starts
    created: list[Path] = []
    if not options.resume:
        study_dir = options.storage / spec.name
        created = [d for d in (options.storage, study_dir) if not d.exists()]
        run_dir = run_folder.claim_run_dir(study_dir, options.run, smoke=options.smoke, shared=options.remote is not None)
        if options.remote is not None:   # the mirror's mkdir keeps out drivers of this machine only
            try:
                options.remote.claim(spec.name, run_dir.name)
            except UserError:
                for folder in (run_dir, *reversed(created)):
                    with contextlib.suppress(OSError):   # another of this machine's runs may be in it
                        folder.rmdir()
                raise
    ctx = RunContext(options, spec, RunFolder(run_dir), data, data_path=data_path, created=[*created, run_dir],
                     start_again=options.resume and start_again)
    if data_path and not options.resume:
        ctx.data_sha256 = run_folder.file_sha256(Path(data_path))
    return ctx


def _put_back_cut_short_snapshot(run_dir: Path, options: RunOptions) -> bool:
    """Tune's last snapshot, put back whole from the run's copy when a kill cut its copy
    into the run folder short (a file cut short, or files of two snapshots: see
    studies.runs.snapshot_copy), before anything reads it; a file cut short that cannot
    be put back is refused, trusted or not (Tune hangs on it). True: the driver was
    killed while Tune wrote tuner.pkl, before any snapshot; the study starts again in
    this folder (nothing in it is read)."""
    if options.remote is not None:   # Tune resumes from the bucket's files, which the copy is not of
        return False
    from studies.runs.snapshot_copy import check_snapshot_whole, killed_before_first_snapshot, put_back_damaged

    if killed_before_first_snapshot(run_dir):
        print(f"note: {run_dir / 'tuner.pkl'}: cut short by a kill while Tune wrote it, before any trial ran: the "
              "study starts again in this run folder", flush=True)
        return True
    restored = put_back_damaged(run_dir, signing_key())
    if restored:
        states = [name for name in restored if "/" not in name]
        trials = {name.split("/")[0] for name in restored if "/" in name}
        files = len(restored) - len(states)
        what = ", ".join([*states, *([f"{files} file{'s' * (files != 1)} of {len(trials)} trial"
                                      f"{'s' * (len(trials) != 1)}"] if files else [])])
        print(f"note: {what}: cut short by a kill during Tune's copy of its last snapshot; put back from the run's "
              "whole copy of that snapshot (.last-snapshot/), so the run folder holds that one snapshot", flush=True)
    check_snapshot_whole(run_dir)
    return False


def _check_optuna_db(folder: RunFolder, study: str) -> None:
    """A damaged optuna.db is refused (the user moves it aside to have it rebuilt);
    a missing one is rebuilt once the run is locked, if Tune's snapshot is there."""
    db = folder.optuna_db
    if db.exists():
        run_folder.check_optuna_study(db, study)
    elif not has_tune_snapshot(folder.path):
        raise UserError(f"{db}: missing, and the run has no Tune snapshot to rebuild it from or resume; the trials "
                        "on disk stay readable by --report; start a new run")


def _rebuild_optuna_db_if_needed(ctx: RunContext) -> None:
    """Rebuilt when missing, or when behind Tune's snapshot (see missing_from_db);
    a file that is behind is kept beside it as ``optuna.db.behind``."""
    from studies.runs.optuna_rebuild import missing_from_db, rebuild_optuna_study

    db = ctx.folder.optuna_db
    if not db.exists():
        n = rebuild_optuna_study(ctx.folder.path, db, ctx.spec)
        print(f"note: {db} was missing: rebuilt from the {n} trials on disk (their parameters, epochs and states)")
        return
    missing = missing_from_db(ctx.folder.path, db, ctx.spec.name)
    if missing:
        aside = db.with_name(db.name + ".behind")
        os.replace(db, aside)
        n = rebuild_optuna_study(ctx.folder.path, db, ctx.spec)
        print(f"note: {db} did not hold trials {', '.join(missing)} of Tune's last snapshot (saved before it): rebuilt "
              f"from the {n} trials on disk; the old file is {aside}")


def recorded_data(info: RunInfo, given: str | None, flag: str) -> str | None:
    """The data file a run was started with (None: the synthetic set), refusing
    another ``--data`` and a file whose content changed since: a resumed study on
    other data would mix two data sets in one table."""
    recorded = info.invocation.data
    if given is not None and (recorded is None or Path(given).resolve() != Path(recorded).resolve()):
        started = f"--data {recorded}" if recorded else "the synthetic data (no --data)"
        raise UserError(f"--data {given}: run {info.run} was started with {started}; {flag} continues on that data "
                        "(drop --data, or start a new run)")
    if recorded is None:
        return None
    if not Path(recorded).is_file():
        raise UserError(f"{recorded}: the data file run {info.run} was started with is gone; {flag} needs it back")
    if info.data_sha256 is not None:
        now = run_folder.file_sha256(Path(recorded))
        if now != info.data_sha256:
            raise UserError(f"{recorded}: changed since run {info.run} started (sha256 {now[:12]}..., recorded "
                            f"{info.data_sha256[:12]}...); {flag} would mix two data sets in one table")
    return recorded


@contextmanager
def launch(ctx: RunContext, *, shutdown_later: ExitStack | None = None) -> Iterator[None]:
    """Ray up (local or joined), the cluster checked against the spec's resources and storage.
    ``shutdown_later``: see ray_session."""
    from studies.tune.ray_session import machine_count, ray_session
    from studies.tune.tuner import concurrency

    ctx.started = time.time()
    o = ctx.options
    _import_in_background(*IMPORTED_WHILE_RAY_STARTS)
    with ray_session(o.address, num_cpus=o.num_cpus, num_gpus=o.num_gpus, shutdown_later=shutdown_later,
                     on_gcs_lost=lambda what: _gcs_lost(ctx, what)) as cluster, \
            sigterm_stops_cleanly() as stop:
        ctx.stop = stop   # installed after ray.init, which sets its own SIGTERM handler
        _check_resources(ctx.spec, cluster)
        if o.remote is None:   # a bucket is seen by every node
            check_shared_storage(o.storage, machine_count())
        ctx.cluster, ctx.concurrent = cluster, concurrency(ctx.spec, cluster)
        yield


def _gcs_lost(ctx: RunContext, what: str) -> None:
    """The local Ray's GCS died (studies.tune.ray_session.GcsWatchdog, in its thread, which then
    ends the process with EXIT_RAY_LOST): run.json says so, and the one line. What is on disk is
    Tune's last periodic snapshot, as after a SIGKILL of the driver; --resume continues from it."""
    recorded = "run.json says interrupted"
    try:
        ctx.folder.update(status="interrupted", finished=time.time())
    except Exception as exc:  # noqa: BLE001 (no run.json yet, or no room: said in the line)
        recorded = f"run.json could not be marked interrupted ({exc.__class__.__name__}: {exc})"
    if sys.stdout.isatty():
        sys.stdout.write("\r\033[K")   # the live status line, cleared
        sys.stdout.flush()
    print(f"error: Ray's GCS died ({what}); the study stopped at Tune's last snapshot and {recorded}; continue with "
          f"`{continue_command(ctx)}`", file=sys.stderr, flush=True)


# Tune's TensorBoard logger, then the report: neither imports Ray (tests/studies/report/test_report_files.py).
IMPORTED_WHILE_RAY_STARTS = ("tensorboardX", "studies.report.write")


def _import_in_background(*modules: str) -> None:
    """Import, while Ray starts, modules needed after it: ``ray.init`` mostly waits
    for Ray's processes, and these cost the driver a second or more. Only modules
    that never import Ray (so the two threads never wait on each other's imports);
    any failure here is left to the import where the module is used."""
    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001 (raised again, in the main thread, where it is used)
                return

    ending_thread(load, "import-in-background")   # the report waits for it before it forks


def search(ctx: RunContext) -> set[str]:
    """The Tune experiment (new or restored); run.json before and after. Returns Tune's trial ids."""
    from studies.tune import tuner as tuner_mod

    spec, folder = ctx.spec, ctx.folder
    # A resumed folder was checked in prepare(); Tune's reads are checked again as it makes them
    # (a file swapped in since would otherwise be unpickled, and signed). One the user trusts is signed.
    checked = ctx.options.resume and not ctx.options.trust_run_folder
    before = folder.info().status if ctx.options.resume else None
    try:
        with tuner_mod.pickles_signed(folder.path, check=checked):
            tuner, info = _make_tuner(ctx, checked)
            tune_trials, interrupted, fit_s = _announce_and_fit(ctx, tuner)
    except RefusedPickle:
        if before is not None:
            folder.update(status=before)   # refused before Tune ran anything: the run is as it was
        raise
    _sign_last_snapshot(folder.path, tune_trials)
    wall = time.time() - ctx.started
    b = spec.budget
    ctx.status = "finished" if not interrupted and len(tune_trials) >= b.num_samples else "interrupted"
    if interrupted and not ctx.stop.terminated and ctx.bucket_lost is None:   # a guard's stop, or a Ctrl+C?
        from studies.tune.node_guard import live_cpus

        ctx.disk_full = low_space(folder.path)
        ctx.ray_lost = ctx.disk_full is None and live_cpus() <= 0
    folder.update(status=ctx.status, finished=time.time(), wall_s=info.wall_s + wall, tune_s=info.tune_s + fit_s)
    _add_stage_time(folder, "search", wall)
    return {t.trial_id for t in tune_trials}


def _make_tuner(ctx: RunContext, checked: bool) -> tuple[Any, run_folder.RunInfo]:
    """The Tuner: restored (``checked``: what it unpickles is checked as it reads it), or
    new, with the run's first files; and the run record as the search starts."""
    from studies.tune import tuner as tuner_mod

    spec, folder = ctx.spec, ctx.folder
    if ctx.start_again:   # nothing ran: what the killed driver began is made again, and signed as Tune writes it
        from studies.runs.run_signing import SIGNATURES_FILE, TUNER_FILE

        db = folder.optuna_db
        for path in (folder.path / TUNER_FILE, db, db.with_name(f"{db.name}-journal"), folder.path / SIGNATURES_FILE):
            path.unlink(missing_ok=True)
        info = folder.update(status="running", resumed=time.time())
        tuner = tuner_mod.build_tuner(spec, folder.path, ctx.data, max_concurrent=ctx.concurrent,
                                      remote=ctx.options.remote)
    elif ctx.options.resume:
        info = folder.update(status="running", resumed=time.time())
        if ctx.options.trust_run_folder:
            sign_run_folder(folder.path, signing_key())
        tuner = tuner_mod.restore_tuner(spec, folder.path, ctx.data, ctx.options.remote,
                                        checker=tuner_mod.copy_checker(folder.path) if checked else None)
    else:
        assert spec.search_space_path is not None  # load_spec always sets it
        shutil.copyfile(spec.path, folder.spec_copy)
        shutil.copyfile(spec.search_space_path, folder.search_space_copy)
        info = _new_run_info(ctx)
        run_folder.write_run_info(folder.path, info)
        tuner = tuner_mod.build_tuner(spec, folder.path, ctx.data, max_concurrent=ctx.concurrent,
                                      remote=ctx.options.remote)
    push_run(ctx.options.remote, folder.path)
    return tuner, info


def _announce_and_fit(ctx: RunContext, tuner: Any) -> tuple[list[Any], bool, float]:
    """The study's header line, then Tune's fit: its trials, whether a stop interrupted it, its seconds."""
    spec, b = ctx.spec, ctx.spec.budget
    on = ("multi-objective ASHA on " + ", ".join(f"'{m}' ({d})" for m, d in zip(spec.metrics, spec.modes))
          if spec.multi_objective else f"ASHA on '{spec.metric}' ({spec.mode})")
    print(f"{spec.name}: {b.num_samples} trials, up to {ctx.concurrent} at once on {ctx.cluster.get('CPU', 0):g} CPUs"
          f"/{ctx.cluster.get('GPU', 0):g} GPUs; {on}, grace {b.grace_period}, "
          f"reduction {b.reduction_factor:g}, max {b.max_epochs} epochs\nrun folder: {shown_path(ctx.options, ctx.folder.path)}",
          flush=True)
    fit_started = time.time()
    tune_trials, interrupted = _fit(ctx, tuner)
    return tune_trials, interrupted, time.time() - fit_started


def _fit(ctx: RunContext, tuner: Any) -> tuple[list[Any], bool]:
    """Tune's fit: its trials, and whether a stop interrupted it. A run in a bucket
    that stopped answering (studies.tune.run_folder_callbacks.BucketGuard stops
    it; Tune then fails listing it) is interrupted, ``ctx.bucket_lost`` saying why."""
    from studies._compat import grid_trials
    from studies.tune import tuner as tuner_mod

    remote, folder = ctx.options.remote, ctx.folder
    try:
        grid, interrupted = tuner_mod.fit(tuner, folder.optuna_db)
    except OSError:
        ctx.bucket_lost = remote.unreachable() if remote is not None else None
        if ctx.bucket_lost is None:
            raise
        return [], True
    if remote is not None:
        ctx.bucket_lost = remote.unreachable() if interrupted else None
        if ctx.bucket_lost is None:   # Tune's folders and snapshot, for the tables and the signatures
            remote.pull(*folder.path.relative_to(remote.mirror).parts)
    return grid_trials(grid), interrupted


def _new_run_info(ctx: RunContext) -> RunInfo:
    spec, o = ctx.spec, ctx.options
    return RunInfo(
        study=spec.name, run=ctx.folder.name, status="running", started=ctx.started,
        invocation=Invocation(study_file=str(spec.path), smoke=o.smoke, overrides=list(o.overrides),
                              fixed=list(o.fixed), data=ctx.data_path, address=o.address), data_sha256=ctx.data_sha256,
        metric=spec.metric, mode=spec.mode, max_epochs=spec.budget.max_epochs,
        num_samples=spec.budget.num_samples, params=[p.name for p in spec.params],
        resources={"cpus_per_trial": spec.resources.cpus_per_trial, "gpus_per_trial": spec.resources.gpus_per_trial},
        max_concurrent=ctx.concurrent, cluster=ctx.cluster,
        git_commit=run_folder.git_commit(spec.path.parent), platform=run_folder.platform_version(),
        host=run_folder.host(), wall_s=0.0,
    )


def _sign_last_snapshot(run_dir: Path, tune_trials: list[Any]) -> None:
    """Sign the fit's last snapshot from Tune's own staging copy of it (RunSigner
    signs each snapshot that way while trials run; a resume with nothing left to
    run takes no step, so RunSigner never saw the folder). Only those bytes: a file
    another user put into a shared run folder during the run stays unsigned."""
    from studies._compat import experiment_dirs

    staging = Path(experiment_dirs(tune_trials[0])[0]) if tune_trials else None
    if staging is not None and staging.is_dir():
        sign_run_folder(run_dir, signing_key(), sources=staging)
    elif not tune_trials:   # stopped before its first trial: only Tune's first files are there
        sign_run_folder(run_dir, signing_key())


def reconcile(ctx: RunContext, tune_ids: set[str], tune_trials: list[TuneTrial]) -> None:
    """Leave no Optuna trial RUNNING once the study has finished (see reconcile_running_trials)."""
    from studies.runs.optuna_store import reconcile_running_trials

    spec = ctx.spec
    outcomes = {t.trial_id: (t.values_for_optuna(spec.metrics), bool(t.error)) for t in tune_trials if t.trial_id in tune_ids}
    done = reconcile_running_trials(ctx.folder.optuna_url, spec.name, outcomes, spec.budget.max_epochs)
    if done["told"] or done["orphaned"]:
        print(f"note: a killed driver had left Optuna trials RUNNING: told their outcome to {done['told']}, "
              f"marked orphaned (FAIL) {done['orphaned']}")
    if done["set_aside"]:
        print(f"note: Optuna trials {done['set_aside']} ended after the snapshot this run resumed from, which does not "
              "hold them; marked orphaned (the resumed study ran others in their place, to num_samples)")


def wants_designed(ctx: RunContext) -> bool:
    """Asked for (the flag, the spec), or started before: a stopped designed stage continues."""
    loo = ctx.spec.ablation.leave_one_out
    return (ctx.options.designed or ctx.spec.ablation.confirm.enabled or (loo is not None and loo.enabled)
            or ctx.folder.candidates.is_file())


def designed(ctx: RunContext, *, confirm: bool | None = None) -> bool:
    """The designed stage (confirmation and/or leave-one-out) in its own Tune
    experiment; run.json says "running" while it runs. Returns whether a stop
    signal interrupted it (the run is then "interrupted"; --resume continues it)."""
    from studies.tune.designed_stage import run_designed_stage

    assert ctx.trials is not None
    confirm = (ctx.options.designed or ctx.spec.ablation.confirm.enabled) if confirm is None else confirm
    started, before = time.time(), ctx.status
    remote = ctx.options.remote
    ctx.folder.update(status="running")
    interrupted = run_designed_stage(ctx.spec, ctx.folder.path, ctx.trials, ctx.data, max_concurrent=ctx.concurrent,
                                     confirm=confirm, remote=remote)
    if remote is not None:
        remote.pull(*ctx.folder.designed.relative_to(remote.mirror).parts)
    ctx.status = "interrupted" if interrupted else before
    _add_stage_time(ctx.folder, "designed", time.time() - started)   # a continued stage adds to its time
    ctx.folder.update(status=ctx.status)
    return interrupted


def report(ctx: RunContext) -> WrittenReport:
    started = time.time()
    written = write_outputs(ctx.folder.path, ctx.spec, trials=ctx.trials)
    _add_stage_time(ctx.folder, "report", time.time() - started, replace=True)
    return written


def designed_on_existing_run(options: RunOptions) -> int:
    """--designed on an existing run: the designed stage alone, then the report.
    Only ``ablation.*`` may be changed (and is recorded, so --report uses it too)."""
    assert options.run is not None
    folder = RunFolder(options.storage / options.study_path.stem / options.run)
    pull_run(options.remote, folder.path)
    refused = [o for o in options.overrides if not o.startswith(CONFIRM_OVERRIDABLE)]
    if refused:
        raise UserError(f"--set {refused[0]}: --designed on the existing run {options.run} can change only ablation.* "
                        "(the search it confirms has already run); start a new run to change the rest")
    info = folder.info()
    if options.smoke != info.invocation.smoke:
        made = "a smoke run" if not options.smoke else "not a smoke run"
        raise UserError(f"--smoke: run {options.run} was {made}; --designed on it keeps the run's own setting "
                        f"({'add' if not options.smoke else 'drop'} --smoke)")
    check_fixed_unchanged(options.fixed, info.invocation.fixed, options.run, "--designed --run")
    spec = spec_of_run(folder.path, extra=options.overrides)  # validated here, before anything runs
    if info.status == "running":
        raise UserError(f"{folder.path}: the run is still running; confirm it when it has finished")
    trials = read_trials(folder, spec)
    if trials.trials.empty:
        raise UserError(f"{folder.path}: no trials to confirm")
    if folder.designed.exists():
        raise UserError(_designed_exists(folder, options))
    data_path = recorded_data(info, options.data, "--designed --run")
    data = load_family_data(spec, data_path, options.cache_dir)
    ctx = RunContext(options, spec, folder, data, status=info.status, trials=trials, data_path=data_path)
    with ExitStack() as held:
        held.enter_context(run_folder.driver_lock(folder.path))
        with launch(ctx, shutdown_later=held):   # Ray stops while the report is written
            if options.overrides:
                folder.update(designed_overrides=[*info.designed_overrides, *options.overrides])
            interrupted = designed(ctx, confirm=True)
        written = report(ctx)
        push_run(options.remote, folder.path)
    print_files(written.files, folder.path, verbose=options.verbose)
    print_answer(written)
    return _exit_code(ctx) if interrupted else 0


def _designed_exists(folder: RunFolder, options: RunOptions) -> str:
    """Why --designed on a run refuses a stage that is there: done, or to be continued by --resume."""
    from studies.runs.designed_record import complete_runs, planned_pairs, read_plan

    plan = read_plan(folder)
    if plan is not None and "seed_values" in plan:
        done = complete_runs(folder.designed, (), int(plan["max_epochs"]))
        left = len(set(planned_pairs(plan)) - {(str(c), int(s)) for c, s in zip(done["config"], done["seed"])})
        if left:
            return (f"{folder.designed}: this run's designed stage was stopped with {left} of its runs not done; "
                    f"continue it with --resume --run {options.run}")
    return f"{folder.designed}: a designed stage already exists for this run (delete that folder to redo it)"


def read_trials(folder: RunFolder, spec: StudySpec, *, run_active: bool = False,
                tune_trials: list[TuneTrial] | None = None) -> RunTrials:
    """The run's trials table; ``tune_trials`` if its Tune folders were already read."""
    return load_trials(folder.path, metric=spec.metric, mode=spec.mode, params=[p.name for p in spec.params],
                       max_epochs=spec.budget.max_epochs, run_active=run_active, tune_trials=tune_trials)


def write_outputs(run_dir: Path, spec: StudySpec, *, trials: RunTrials | None = None) -> WrittenReport:
    """tables/, plots/ and hparams/ of a run; ``trials`` if already read, else read here."""
    info = run_folder.read_run_info(run_dir)
    for link, target in RunFolder(run_dir).outputs_without_links():
        print(f"warning: {link}: a symbolic link (to {target}) in the report's folders; removed (not what it points "
              "to), the report writes a file of its own there", file=sys.stderr)
    if trials is None:
        trials = read_trials(RunFolder(run_dir), spec, run_active=info.status == "running")
    from studies.report.write import write_report

    return write_report(run_dir, trials, spec=spec, info=info)


def _counts(trials: RunTrials) -> dict[str, int]:
    return trials.trials["status"].value_counts().to_dict() if not trials.trials.empty else {}


def _add_stage_time(folder: RunFolder, stage: str, seconds: float, *, replace: bool = False) -> RunInfo:
    """run.json's ``stage_s``: seconds per stage (search, designed, report);
    a resumed search adds to its stage, a rebuilt report replaces its own."""
    stages = dict(folder.info().stage_s)
    stages[stage] = seconds + (0.0 if replace else float(stages.get(stage, 0.0)))
    return folder.update(stage_s=stages)


def _remove_created(ctx: RunContext) -> None:
    """Remove what this run created and left empty, deepest first; a folder the
    user had (an empty --storage) stays."""
    (ctx.folder.path / run_folder.LOCK_FILE).unlink(missing_ok=True)
    for path in reversed(ctx.created):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
