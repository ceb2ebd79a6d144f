"""The command line: parse, validate everything, then hand over to the driver.

Every user-facing error ends here as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

from studies.errors import (
    EXIT_DISK_FULL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    DiskFull,
    RefusedPickle,
    Terminated,
    UserError,
)
from studies.runs.remote_storage import RemoteStore, is_uri
from studies.runs.run_folder import RUN_FILE
from studies.runs.storage import DEFAULT_CACHE_DIR, check_run_name, resolve_storage, writable_folder

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog="python studies/run.py",
        description="Run a Ray Tune + Optuna + ASHA hyperparameter study and write its tables.",
    )
    p.add_argument("study", nargs="?", help="study name (studies/NAME.yaml) or a path to a spec .yaml")
    p.add_argument("--list", action="store_true", help="list every study, one line each")
    p.add_argument("--runs", action="store_true", help="list the runs of STUDY with their state")
    p.add_argument("--report", action="store_true", help="rebuild tables and plots of a run from disk (no Ray)")
    p.add_argument("--designed", "--confirm", dest="designed", action="store_true",
                   help="the designed stage with confirmation: re-run the top-k configs and the baseline over seeds at "
                        "the full budget (after the search, or alone on an existing --run); --confirm is its old name")
    p.add_argument("--verbose", action="store_true", help="list every file written at the end (default: a count)")
    p.add_argument("--smoke", action="store_true", help="apply the spec's smoke overrides (tiny, quick)")
    p.add_argument("--run", metavar="RUN", help="run folder name (default: a timestamp; --resume/--report: the latest)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (the latest, or --run)")
    p.add_argument("--trust-run-folder", action="store_true",
                   help="with --resume: continue a run folder this user's key did not sign (one from elsewhere); "
                        "Tune unpickles it, which can run any code")
    p.add_argument("--storage", metavar="PATH", help="results root (default: ./results next to studies/)")
    p.add_argument("--address", metavar="ADDR", default=None,
                   help="Ray cluster to join: auto, host:port or ray://host:port (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--num-samples", type=int, metavar="N", help="trials to run (overrides budget.num_samples)")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="cap on trials running at once")
    p.add_argument("--cpus-per-trial", type=float, metavar="C", help="CPUs per trial (resources.cpus_per_trial)")
    p.add_argument("--gpus-per-trial", type=float, metavar="G", help="GPUs per trial; 0.25 packs four trials on a GPU")
    p.add_argument("--seed", type=int, help="study seed (Optuna's sampler and every trial)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set budget.max_epochs=10 --set config.d_model=32 (repeatable; "
                        "a searched parameter is pinned with --fix instead)")
    p.add_argument("--fix", dest="fixed", action="append", default=[], metavar="NAME=VALUE",
                   help="pin a search-space parameter for this run, e.g. --fix lr=3e-3: no longer searched, VALUE (within "
                        "its declared range or choices) in every trial's config; recorded in run.json (repeatable)")
    p.add_argument("--data", metavar="FILE.h5", help="train on your own HDF5 file (the family's schema, see README)")
    p.add_argument("--cache-dir", metavar="PATH", help="where synthetic data sets are cached (default: ~/.cache/raystudies)")
    p.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the embedded local Ray (default: all)")
    p.add_argument("--num-gpus", type=int, metavar="N", help="GPUs of the embedded local Ray (default: detected)")
    return p


def _cli_overrides(args: argparse.Namespace) -> list[str]:
    """CLI options become --set overrides, so they go through the same validation."""
    out = list(args.overrides)
    pairs = [("budget.num_samples", args.num_samples), ("resources.max_concurrent", args.max_concurrent),
             ("resources.cpus_per_trial", args.cpus_per_trial), ("resources.gpus_per_trial", args.gpus_per_trial),
             ("seed", args.seed)]
    out += [f"{key}={value}" for key, value in pairs if value is not None]
    return out


def _list_studies() -> None:
    from studies.spec.study import known_studies, load_spec

    for name, path in known_studies().items():
        try:
            spec = load_spec(path)
            what = spec.family or spec.trainable
            first = re.split(r"(?<=[.?!])\s", spec.description.strip(), maxsplit=1)[0]
            first = first if len(first) <= 110 else first[:107] + "..."
            objectives = ", ".join(f"{m} ({d})" for m, d in zip(spec.metrics, spec.modes))
            print(f"{name:18s} {what:14s} {objectives:22s} {first}")
        except UserError as exc:
            print(f"{name:18s} INVALID: {exc}")


class _OneLineParser(argparse.ArgumentParser):
    """argparse's usage errors as the CLI's one line (not usage plus the error)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = _dispatch(args)
        sys.stdout.flush()   # inside the try: a reader that left shows here, not at exit
        return code
    except BrokenPipeError:   # `--list | head`: the reader left; nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UserError, RefusedPickle) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except DiskFull as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DISK_FULL
    except KeyboardInterrupt as exc:
        print("terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    from studies.spec.study import resolve_study_path

    if args.list:
        _list_studies()
        return 0
    if not args.study:
        raise UserError("no study given; run `python studies/run.py --list` to see them, then `python studies/run.py NAME`")
    study_name = Path(args.study).stem
    remote = remote_store(args.storage, study_name)
    storage = remote.mirror if remote is not None else resolve_storage(args.storage, REPO_ROOT / "results")
    cache_dir = writable_folder("--cache-dir", args.cache_dir) if args.cache_dir is not None else DEFAULT_CACHE_DIR
    if args.run is not None:
        check_run_name(args.run)
    from studies.spec.study import SEED_LIMIT

    if args.seed is not None and not 0 <= args.seed < SEED_LIMIT:
        raise UserError(f"--seed {args.seed}: expected 0 <= seed < 2**31 (numpy and Optuna take seeds below 2**32; "
                        "the study derives further seeds from it by adding offsets)")
    address = args.address if args.address is not None else os.environ.get("RAY_ADDRESS") or None
    for name, value in (("--num-samples", args.num_samples), ("--max-concurrent", args.max_concurrent),
                        ("--num-cpus", args.num_cpus), ("--num-gpus", args.num_gpus)):
        if value is not None and value < (0 if name in ("--max-concurrent", "--num-gpus") else 1):
            raise UserError(f"{name}: is {value}, expected a positive number")
    if args.data is not None and not Path(args.data).is_file():
        raise UserError(f"--data {args.data}: no such file")
    if args.trust_run_folder and not args.resume:
        raise UserError("--trust-run-folder: goes with --resume (only a resume unpickles a run folder)")

    study_path = resolve_study_path(args.study)
    if args.runs:
        return list_runs_command(storage, study_path.stem)
    if args.report:
        return report_command(storage, study_path.stem, args.run, verbose=args.verbose, remote=remote, fixed=args.fixed)
    from studies import driver  # the report's pandas, scipy and matplotlib: not for --list, --runs

    options = driver.RunOptions(
        study_path=study_path, smoke=args.smoke, overrides=_cli_overrides(args), fixed=args.fixed, storage=storage,
        run=args.run, resume=args.resume, address=address, data=args.data,
        cache_dir=cache_dir,
        num_cpus=args.num_cpus, num_gpus=args.num_gpus, designed=args.designed, verbose=args.verbose,
        trust_run_folder=args.trust_run_folder, remote=remote,
    )
    if args.designed and args.run and not args.resume and (storage / study_path.stem / args.run).exists():
        return driver.designed_on_existing_run(options)
    return driver.run_study(options)


def list_runs_command(storage: Path, study: str) -> int:
    """--runs: one line per run, oldest first: state, start, stage times, trial counts."""
    import time

    from studies.console import stage_summary
    from studies.runs import run_folder

    runs = run_folder.list_runs(storage, study)
    if not runs:
        print(f"no runs of {study} under {storage / study}")
        return 0
    for run_dir in runs:
        info = run_folder.read_run_info(run_dir)
        counts = ", ".join(f"{n} {s}" for s, n in info.trial_counts.items())
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.started))
        print(f"{run_dir.name:24s} {info.status:11s} started {started}  {stage_summary(info)}  {counts}")
    return 0


def remote_store(storage: str | None, study: str) -> RemoteStore | None:
    """A bucket URI for --storage: checked, and the study's run.json files put in
    its local mirror (what --runs lists, and how a new run's name is kept unique)."""
    if storage is None or not is_uri(storage):
        return None
    from studies.runs.run_folder import in_use

    remote = RemoteStore.from_uri(storage)
    remote.check_reachable()
    for run in remote.listdir(study):
        if not in_use(remote.mirror / study / run):   # a driver here holds a newer run.json than the bucket's
            remote.pull(study, run, only=(RUN_FILE,))
    return remote


def report_command(storage: Path, study: str, run: str | None, *, verbose: bool = False,
                   remote: RemoteStore | None = None, fixed: list[str] | tuple[str, ...] = ()) -> int:
    """--report: rebuild tables/ and plots/ from disk, Ray- and torch-free
    (a run in a bucket: from its mirror, pulled first; the tables put back).
    The run's own --fix values apply; ``fixed`` (this command's) may only repeat them."""
    import time

    from studies import driver
    from studies.console import print_answer, print_files
    from studies.runs import run_folder

    folder = run_folder.RunFolder(storage / study / run if run else run_folder.latest_run(storage, study))
    if not folder.exists():
        raise UserError(f"{folder.path}: no such run (see `python studies/run.py {study} --runs`)")
    driver.pull_run(remote, folder.path, to_read=True)
    from studies.spec.study import check_fixed_unchanged

    check_fixed_unchanged(fixed, folder.info().invocation.fixed, folder.name, "--report")
    spec = driver.spec_of_run(folder.path, for_training=False)
    started = time.time()
    written = driver.write_outputs(folder.path, spec)
    for line in written.unreadable:
        print(f"warning: {line}", file=sys.stderr)
    driver.push_run(remote, folder.path, report_only=True)
    print(f"report of {folder.path if remote is None else remote.uri_for(folder.path)} rebuilt in "
          f"{time.time() - started:.1f} s")
    print_files(written.files, folder.path, verbose=verbose)
    print_answer(written)
    return 0
