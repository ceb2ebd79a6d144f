"""Run a study end to end: spec -> data -> Ray -> Tuner -> tables."""

from __future__ import annotations

import shutil
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import ConfigError, config_from_dict
from core.data.hdf5 import DataFileError
from studies import run_folder
from studies.errors import UserError
from studies.report.trials import load_trials
from studies.report.write import WrittenReport, write_report
from studies.spec import STUDIES_DIR, StudySpec, load_spec
from studies.storage import check_shared_storage

SPEC_COPY, SEARCH_SPACE_COPY = "spec.yaml", "search_space.yaml"


@dataclass
class RunOptions:
    study_path: Path
    storage: Path
    cache_dir: Path
    smoke: bool = False
    overrides: list[str] = field(default_factory=list)
    run: str | None = None
    resume: bool = False
    address: str | None = None
    data: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    confirm: bool = False
    verbose: bool = False


# What --confirm on an existing run may change: the designed stage only (the search it builds on is done).
CONFIRM_OVERRIDABLE = ("ablation.",)


def spec_of_run(run_dir: Path, *, for_training: bool = True, extra: list[str] = ()) -> StudySpec:
    """The spec exactly as the run used it: the copies in the run folder plus the
    recorded smoke flag and overrides (the search's, then a later --confirm's,
    then ``extra``). ``for_training=False`` (reports) skips the family check,
    which imports torch."""
    info = run_folder.read_run_info(run_dir)
    inv = info.get("invocation", {})
    overrides = [*inv.get("overrides", []), *info.get("confirm_overrides", []), *extra]
    return load_spec(run_dir / SPEC_COPY, smoke=inv.get("smoke", False), overrides=overrides,
                     search_space_path=run_dir / SEARCH_SPACE_COPY, name=info["study"], check_family=for_training)


def load_family_data(spec: StudySpec, data_path: str | None, cache_dir: Path) -> dict[str, Any] | None:
    family = spec.family_info
    if family is None:
        return None
    config = config_from_dict(family.config_cls, {**spec.config, "max_epochs": spec.budget.max_epochs})
    try:
        return family.load_data(config, data_path=data_path, cache_dir=cache_dir)
    except DataFileError as exc:
        raise UserError(str(exc)) from None
    except ConfigError as exc:
        raise UserError(f"{spec.path}: config: {exc}") from None


def _prepare_run_dir(options: RunOptions) -> tuple[Path, StudySpec]:
    study = options.study_path.stem
    if options.resume:
        run_dir = (options.storage / study / options.run) if options.run else run_folder.latest_run(options.storage, study)
        if not (run_dir / run_folder.RUN_FILE).is_file():
            raise UserError(f"{run_dir}: no such run to resume (see `python studies/run.py {study} --runs`)")
        if options.overrides or options.smoke:
            given = " ".join([*(f"--set {o}" for o in options.overrides), *(["--smoke"] if options.smoke else [])])
            raise UserError(f"--resume continues {run_dir} with the spec and overrides recorded with it; {given} would "
                            "change it (start a new run for other settings)")
        return run_dir, spec_of_run(run_dir)
    spec = load_spec(options.study_path, smoke=options.smoke, overrides=options.overrides)
    if options.run and (options.storage / study / options.run).exists():
        raise UserError(f"{options.storage / study / options.run}: run folder already exists; continue it with "
                        f"--resume --run {options.run}, or pick another --run name")
    return options.storage / study / (options.run or ""), spec


def _check_resources(spec: StudySpec, cluster: dict[str, float]) -> None:
    r = spec.resources
    if r.gpus_per_trial > 0 and cluster.get("GPU", 0) <= 0:
        raise UserError(f"resources.gpus_per_trial is {r.gpus_per_trial}, but the Ray cluster has no GPUs "
                        "(use --gpus-per-trial 0 on a CPU machine)")
    if r.gpus_per_trial > cluster.get("GPU", 0) and r.gpus_per_trial > 0:
        raise UserError(f"resources.gpus_per_trial is {r.gpus_per_trial}, more than the cluster's {cluster.get('GPU', 0):g} GPUs")
    if r.cpus_per_trial > cluster.get("CPU", 0):
        raise UserError(f"resources.cpus_per_trial is {r.cpus_per_trial}, more than the cluster's {cluster.get('CPU', 0):g} CPUs")


def run_study(options: RunOptions) -> int:
    run_dir, spec = _prepare_run_dir(options)
    if options.address:
        from studies.ray_session import check_address

        check_address(options.address)  # before anything is built or written
    data = load_family_data(spec, options.data, options.cache_dir)   # validated before Ray starts
    if spec.trainable and options.data:
        spec.config["data_path"] = str(Path(options.data).resolve())  # a user trainable reads its own file
    if spec.trainable:
        from studies.tuner import import_trainable

        import_trainable(spec.trainable)  # a typo fails here, before Ray starts
    if not options.resume:
        run_dir = run_folder.claim_run_dir(options.storage / spec.name, options.run, smoke=options.smoke)
    try:
        return _run_in_ray(options, spec, run_dir, data)
    except BaseException:
        if not options.resume:  # claimed but nothing written (Ray could not start): leave no trace
            for folder in (run_dir, run_dir.parent, run_dir.parent.parent):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
        raise


def _run_in_ray(options: RunOptions, spec: StudySpec, run_dir: Path, data: dict[str, Any] | None) -> int:
    from studies import tuner as tuner_mod
    from studies._compat import grid_trials
    from studies.ray_session import machine_count, ray_session

    started = time.time()
    with ray_session(options.address, num_cpus=options.num_cpus, num_gpus=options.num_gpus) as cluster:
        _check_resources(spec, cluster)
        check_shared_storage(options.storage, machine_count())
        concurrent = tuner_mod.concurrency(spec, cluster)
        if options.resume:
            info = run_folder.update_run_info(run_dir, status="running", resumed=time.time())
            tuner = tuner_mod.restore_tuner(spec, run_dir, data)
        else:
            shutil.copyfile(spec.path, run_dir / SPEC_COPY)
            shutil.copyfile(spec.search_space_path, run_dir / SEARCH_SPACE_COPY)
            info = {
                "study": spec.name, "run": run_dir.name, "status": "running", "started": started,
                "invocation": {"study_file": str(spec.path), "smoke": options.smoke, "overrides": options.overrides,
                               "data": options.data, "address": options.address},
                "metric": spec.metric, "mode": spec.mode, "max_epochs": spec.budget.max_epochs,
                "num_samples": spec.budget.num_samples, "params": [p.name for p in spec.params],
                "resources": {"cpus_per_trial": spec.resources.cpus_per_trial, "gpus_per_trial": spec.resources.gpus_per_trial},
                "max_concurrent": concurrent, "cluster": cluster,
                "git_commit": run_folder.git_commit(spec.path.parent), "platform": run_folder.platform_version(),
                "host": run_folder.host(), "wall_s": 0.0,
            }
            run_folder.write_run_info(run_dir, info)
            tuner = tuner_mod.build_tuner(spec, run_dir, data, max_concurrent=concurrent)
        b = spec.budget
        print(f"{spec.name}: {b.num_samples} trials, up to {concurrent} at once on {cluster.get('CPU', 0):g} CPUs"
              f"/{cluster.get('GPU', 0):g} GPUs; ASHA on '{spec.metric}' ({spec.mode}), grace {b.grace_period}, "
              f"reduction {b.reduction_factor:g}, max {b.max_epochs} epochs\nrun folder: {run_dir}", flush=True)
        fit_started = time.time()
        grid, interrupted = tuner_mod.fit(tuner)
        fit_s = time.time() - fit_started
        wall = time.time() - started
        tune_trials = grid_trials(grid)
        finished = not interrupted and len(tune_trials) >= spec.budget.num_samples
        status = "finished" if finished else "interrupted"
        if finished:
            _reconcile_optuna(spec, run_dir, {t.trial_id for t in tune_trials})
        trials = load_trials(run_dir, metric=spec.metric, mode=spec.mode, params=[p.name for p in spec.params],
                             max_epochs=spec.budget.max_epochs)
        counts = trials.trials["status"].value_counts().to_dict() if not trials.trials.empty else {}
        info = run_folder.update_run_info(run_dir, status=status, finished=time.time(),
                                          wall_s=float(info.get("wall_s", 0.0)) + wall,
                                          tune_s=float(info.get("tune_s", 0.0)) + fit_s, trial_counts=counts)
        _add_stage_time(run_dir, "search", wall)
        loo = getattr(spec.ablation, "leave_one_out", None)
        confirm = options.confirm or spec.ablation.confirm.enabled
        if status == "finished" and (confirm or (loo is not None and loo.enabled)) and not trials.trials.empty:
            _confirm(spec, run_dir, trials, data, concurrent, confirm=confirm)
    report_started = time.time()
    written = write_outputs(run_dir, spec)
    _add_stage_time(run_dir, "report", time.time() - report_started, replace=True)
    _print_summary(spec, run_dir, trials, written, status, verbose=options.verbose)
    if status == "interrupted":
        print(f"interrupted: continue with `python studies/run.py {spec.path if spec.path.parent != STUDIES_DIR else spec.name} "
              f"--resume --run {run_dir.name}`", file=sys.stderr)
        return 130
    return 0


def _reconcile_optuna(spec: StudySpec, run_dir: Path, tune_ids: set[str]) -> None:
    """Leave no Optuna trial RUNNING once the study has finished (see reconcile_running_trials)."""
    from studies.optuna_bridge import reconcile_running_trials
    from studies.tuner import OPTUNA_DB

    run = load_trials(run_dir, metric=spec.metric, mode=spec.mode, params=[p.name for p in spec.params],
                      max_epochs=spec.budget.max_epochs, run_active=True)
    outcomes = {}
    for _, row in run.trials.iterrows():
        if row["trial_id"] not in tune_ids:
            continue
        h = run.history[run.history["trial_id"] == row["trial_id"]] if not run.history.empty else run.history
        values = {int(e): float(v) for e, v in zip(h.get("epoch", []), h.get(spec.metric, []))}
        outcomes[row["trial_id"]] = (values, bool(row["error"]))
    done = reconcile_running_trials(f"sqlite:///{run_dir / OPTUNA_DB}", spec.name, outcomes, spec.budget.max_epochs)
    if done["told"] or done["orphaned"]:
        print(f"note: a killed driver had left Optuna trials RUNNING: told their outcome to {done['told']}, "
              f"marked orphaned (FAIL) {done['orphaned']}")


def _add_stage_time(run_dir: Path, stage: str, seconds: float, *, replace: bool = False) -> dict[str, Any]:
    """run.json's ``stage_s``: seconds per stage (search, designed, report);
    a resumed search adds to its stage, a rebuilt report replaces its own."""
    stages = dict(run_folder.read_run_info(run_dir).get("stage_s") or {})
    stages[stage] = seconds + (0.0 if replace else float(stages.get(stage, 0.0)))
    return run_folder.update_run_info(run_dir, stage_s=stages)


def stage_summary(info: dict[str, Any]) -> str:
    """``236 s (search 134 s, designed runs 91 s, report 11 s)``."""
    stages = info.get("stage_s") or {"search": float(info.get("wall_s", 0.0)),   # a run from before stage_s
                                     **({"designed": float(info["confirm_wall_s"])} if "confirm_wall_s" in info else {})}
    names = {"search": "search", "designed": "designed runs", "report": "report"}
    parts = ", ".join(f"{names[k]} {stages[k]:.0f} s" for k in names if k in stages)
    return f"{sum(stages.values()):.0f} s ({parts})"


def _confirm(spec: StudySpec, run_dir: Path, trials: Any, data: dict[str, Any] | None, concurrent: int,
             confirm: bool = True) -> float:
    from studies.confirm import run_confirmation

    started = time.time()
    run_confirmation(spec, run_dir, trials, data, max_concurrent=concurrent, confirm=confirm)
    seconds = time.time() - started
    run_folder.update_run_info(run_dir, confirm_wall_s=seconds)
    _add_stage_time(run_dir, "designed", seconds, replace=True)
    return seconds


def confirm_command(options: RunOptions) -> int:
    """--confirm on an existing run: only the confirmation stage, then the report."""
    from studies.ray_session import ray_session

    run_dir = options.storage / options.study_path.stem / options.run
    refused = [o for o in options.overrides if not o.startswith(CONFIRM_OVERRIDABLE)]
    if refused:
        raise UserError(f"--set {refused[0]}: --confirm on the existing run {options.run} can change only ablation.* "
                        "(the search it confirms has already run); start a new run to change the rest")
    info = run_folder.read_run_info(run_dir)
    if options.smoke != bool(info.get("invocation", {}).get("smoke", False)):
        made = "a smoke run" if not options.smoke else "not a smoke run"
        raise UserError(f"--smoke: run {options.run} was {made}; --confirm on it keeps the run's own setting "
                        f"({'add' if not options.smoke else 'drop'} --smoke)")
    spec = spec_of_run(run_dir, extra=options.overrides)  # validated here, before anything runs
    if info.get("status") == "running":
        raise UserError(f"{run_dir}: the run is still running; confirm it when it has finished")
    trials = load_trials(run_dir, metric=spec.metric, mode=spec.mode, params=[p.name for p in spec.params],
                         max_epochs=spec.budget.max_epochs)
    if trials.trials.empty:
        raise UserError(f"{run_dir}: no trials to confirm")
    if (run_dir / "confirm").exists():
        raise UserError(f"{run_dir / 'confirm'}: a confirmation stage already exists for this run (delete that folder to redo it)")
    data = load_family_data(spec, info.get("invocation", {}).get("data"), options.cache_dir)
    with ray_session(options.address, num_cpus=options.num_cpus, num_gpus=options.num_gpus) as cluster:
        _check_resources(spec, cluster)
        from studies.tuner import concurrency

        if options.overrides:  # recorded, so --report rebuilds with the same designed-stage settings
            recorded = run_folder.read_run_info(run_dir).get("confirm_overrides", [])
            run_folder.update_run_info(run_dir, confirm_overrides=[*recorded, *options.overrides])
        _confirm(spec, run_dir, trials, data, concurrency(spec, cluster))
    started = time.time()
    written = write_outputs(run_dir, spec)
    info = _add_stage_time(run_dir, "report", time.time() - started, replace=True)
    _print_files(written.files, run_dir, verbose=options.verbose)
    _print_answer(written)
    return 0


def write_outputs(run_dir: Path, spec: StudySpec) -> WrittenReport:
    info = run_folder.read_run_info(run_dir)
    trials = load_trials(run_dir, metric=spec.metric, mode=spec.mode, params=[p.name for p in spec.params],
                         max_epochs=spec.budget.max_epochs, run_active=info.get("status") == "running")
    return write_report(run_dir, trials, spec=spec, info=info)


def _print_summary(spec: StudySpec, run_dir: Path, trials: Any, written: WrittenReport, status: str, *,
                   verbose: bool = False) -> None:
    """Counts, the best trial, where things are; the answer and its path last."""
    df = trials.trials
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    took = stage_summary(run_folder.read_run_info(run_dir))
    print(f"\n{spec.name} {status} in {took}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    from studies.report.answer import best_trial

    best = best_trial(trials, spec.metric, spec.mode)
    if best is not None:  # the value at the full budget, as Optuna holds it (not a trial's best epoch)
        params = ", ".join(f"{p}={_fmt(best[p])}" for p in trials.params if best[p] is not None and best[p] == best[p])
        print(f"best {spec.metric} at the full budget = {best[f'last_{spec.metric}']:.5g} "
              f"(trial {best['trial_id']}, {best['epochs']} epochs): {params}")
    elif not df.empty:
        print(f"no trial ran the full {spec.budget.max_epochs} epochs yet")
    print(f"run folder:   {run_dir}")
    print(f"optuna study: sqlite:///{run_dir / 'optuna.db'}")
    print(f"tensorboard:  tensorboard --logdir {run_dir}")
    _print_files(written.files, run_dir, verbose=verbose)
    _print_answer(written)


def _print_files(files: list[Path], run_dir: Path, *, verbose: bool) -> None:
    if verbose:
        for path in files:
            print(f"wrote         {path}")
    else:
        print(f"wrote {len(files)} tables, plots and logs under {run_dir} (list them with --verbose)")


def _print_answer(written: WrittenReport, width: int = 100) -> None:
    """The answer, one claim per paragraph, and where the tables are: last, so it is what a user sees."""
    print()
    for part in written.answer:
        print(textwrap.fill(part, width=width, break_on_hyphens=False))
        print()
    print(f"answer and tables: {written.path}")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def list_runs_command(storage: Path, study: str) -> int:
    runs = run_folder.list_runs(storage, study)
    if not runs:
        print(f"no runs of {study} under {storage / study}")
        return 0
    for run_dir in runs:
        info = run_folder.read_run_info(run_dir)
        counts = ", ".join(f"{n} {s}" for s, n in (info.get("trial_counts") or {}).items())
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.get("started", 0)))
        print(f"{run_dir.name:24s} {info.get('status', '?'):11s} started {started}  {stage_summary(info)}  {counts}")
    return 0


def report_command(storage: Path, study: str, run: str | None, *, verbose: bool = False) -> int:
    run_dir = (storage / study / run) if run else run_folder.latest_run(storage, study)
    if not (run_dir / run_folder.RUN_FILE).is_file():
        raise UserError(f"{run_dir}: no such run (see `python studies/run.py {study} --runs`)")
    spec = spec_of_run(run_dir, for_training=False)
    started = time.time()
    written = write_outputs(run_dir, spec)
    print(f"report of {run_dir} rebuilt in {time.time() - started:.1f} s")
    _print_files(written.files, run_dir, verbose=verbose)
    _print_answer(written)
    return 0
