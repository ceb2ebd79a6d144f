"""Cost as a study grows: zero-cost trials (a table look-up, ``zero_cost.py``)
at 100 and 1,000 trials (10,000 with ``--with-10k``), through the CLI as a user
runs it, side by side with a plain in-process Optuna loop on the same sampler
(the spec's TPE), the same SQLite storage and the same objective.

    python benchmarks/scale.py [--sizes 100 1000] [--with-10k] [--window 1000] [--profile N]
                               [--throughput TRIALS EPOCHS] [--baseline REV]

For each size: the whole command's wall time, the per-trial cost in each
window of WINDOW trials (from Optuna's completion times, so both ways are
timed the same way: the driver's time between two told trials), the driver's
peak memory (VmHWM), the run folder's size, and the time of ``--report`` and
``--runs`` on the finished run. The in-process loop shows what TPE itself
grows by; the rest of the CLI's growth is ours or Tune's.

``--baseline REV`` also runs the CLI from a git worktree of REV, right after
this checkout's run of each size (before and after a change, side by side in
one run).

``--profile N`` also runs an N-trial study with the driver under cProfile
and prints where its main thread spends the time (TPE, Optuna's storage,
Tune's snapshot, loggers, our callbacks); cProfile slows it, so that run's
wall time is not in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine, worktree  # noqa: E402

MAX_EPOCHS = 3


def write_spec(where: Path) -> Path:
    import yaml
    from zero_cost import SPACE

    (where / "space.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    spec = {
        "trainable": "benchmarks.zero_cost:train",
        "description": "Zero-cost trials (benchmarks/scale.py): what the platform itself costs per trial.",
        "metric": "loss", "mode": "min", "search_space": "space.yaml", "seed": 0,
        "budget": {"max_epochs": MAX_EPOCHS, "grace_period": 1, "reduction_factor": 3, "num_samples": 100},
        "resources": {"cpus_per_trial": 1},
        "config": {"optimizer": "adam", "width": 64, "tag": "a", "lr": 0.01},
    }
    path = where / "zero_cost.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_cli(args: list[str], *, prefix: list[str] | None = None, root: Path = REPO) -> tuple[float, float, subprocess.CompletedProcess]:
    """The CLI (of the checkout at ``root``) as a user runs it; (wall s, the driver's peak RSS MB, process)."""
    started = time.perf_counter()
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([*(prefix or [sys.executable]), str(root / "studies" / "run.py"), *args], cwd=root, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _peak_rss_mb(proc.pid))
        time.sleep(0.5)
    wall = time.perf_counter() - started
    log.seek(0)
    out = log.read()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
    if proc.returncode != 0:
        sys.exit(f"studies/run.py {' '.join(args)} failed ({proc.returncode}):\n{out[-4000:]}")
    return wall, peak, done


def completion_times(db: Path, study: str) -> tuple[float, list[float]]:
    """(first trial's start, each trial's completion in trial order), epoch seconds."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=study, storage=f"sqlite:///{db}").get_trials(deepcopy=False)
    done = sorted(t.datetime_complete.timestamp() for t in trials if t.datetime_complete is not None)
    return min(t.datetime_start.timestamp() for t in trials if t.datetime_start is not None), done


def windows(start: float, done: list[float], size: int) -> list[float]:
    """Seconds per trial in each window of ``size`` told trials."""
    out, last = [], start
    for end in range(size, len(done) + 1, size):
        out.append((done[end - 1] - last) / size)
        last = done[end - 1]
    return out


def in_process(spec_path: Path, n: int, where: Path, window: int) -> dict:
    """The loop a researcher would write: the spec's sampler and space, SQLite, the same values told."""
    import optuna
    from zero_cost import value

    from studies.spec.search_space import define_by_run
    from studies.spec.study import load_spec
    from studies.tune.tuner import build_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(spec_path, overrides=[f"budget.num_samples={n}"])
    db = where / f"inprocess_{n}.db"
    study = optuna.create_study(study_name="loop", storage=f"sqlite:///{db}", sampler=build_sampler(spec),
                                direction="minimize")
    suggest = define_by_run(spec.params)
    started = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        suggest(trial)
        config = {**spec.config, **trial.params}
        for epoch in range(1, MAX_EPOCHS + 1):
            trial.report(value(config, epoch), epoch)
        study.tell(trial, value(config, MAX_EPOCHS))
    wall = time.perf_counter() - started
    start, done = completion_times(db, "loop")
    return {"wall": wall, "windows": windows(start, done, min(window, n)), "db_mb": db.stat().st_size / 1e6}


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def platform(spec_path: Path, n: int, storage: Path, window: int, root: Path = REPO) -> dict:
    name = f"n{n}"
    wall, peak, _ = run_cli([str(spec_path), "--storage", str(storage), "--run", name, "--num-samples", str(n)], root=root)
    run_dir = storage / "zero_cost" / name
    start, done = completion_times(run_dir / "optuna.db", "zero_cost")
    report_s, _, _ = run_cli([str(spec_path), "--storage", str(storage), "--run", name, "--report"], root=root)
    runs_s, _, _ = run_cli([str(spec_path), "--storage", str(storage), "--runs"], root=root)
    info = json.loads((run_dir / "run.json").read_text())
    return {"wall": wall, "tuning": done[-1] - start, "windows": windows(start, done, min(window, n)), "peak_mb": peak,
            "folder_mb": folder_mb(run_dir), "report_s": report_s, "runs_s": runs_s, "told": len(done),
            "status": info.get("status")}


OURS = ("studies/tune/progress.py", "studies/tune/run_folder_callbacks.py", "studies/tune/stall_guard.py", "studies/tune/node_guard.py",
        "studies/runs/free_space.py", "studies/tune/asha_state.py", "studies/tune/tensorboard_logger.py", "studies/tune/metric_check.py")
GROUPS = (  # (label, file path fragments); a part's time includes what it calls (the sampler reads the storage)
    ("TPE suggestion (Optuna samplers)", ("optuna/samplers/",)),
    ("Optuna storage (all of optuna/storages)", ("optuna/storages/",)),
    ("our searcher bridge (suggest, tell, report)", ("studies/tune/optuna_bridge.py",)),
    ("Tune snapshot (experiment state, sync)", ("ray/tune/execution/experiment_state.py",)),
    ("Tune loggers (json, csv, TensorBoard)", ("ray/tune/logger/",)),
    ("ASHA", ("ray/tune/schedulers/",)),
    ("our Tune callbacks (progress, guards, signer, bucket push, HParams)", OURS),
    ("Tune controller step (all of tuning)", ("ray/tune/execution/tune_controller.py",)),
)


def cumulative(stats: pstats.Stats, fragments: tuple[str, ...]) -> float:
    """Cumulative time of the calls into files matching ``fragments`` from outside them (no double counting)."""
    def inside(file: str) -> bool:
        return any(f in file for f in fragments)

    total = 0.0
    for (file, _line, _fn), (_cc, _nc, _tt, ct, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if inside(file):
            total += sum(c[3] for caller, c in callers.items() if not inside(caller[0])) if callers else ct
    return total


def profile(spec_path: Path, n: int, storage: Path, root: Path = REPO, label: str = "this checkout") -> None:
    storage.mkdir(parents=True, exist_ok=True)
    out = storage / "driver.prof"
    wall, _, _ = run_cli([str(spec_path), "--storage", str(storage), "--run", f"prof{n}", "--num-samples", str(n)],
                         prefix=[sys.executable, "-m", "cProfile", "-o", str(out)], root=root)
    stats = pstats.Stats(str(out))
    print(f"\n{label}: where the driver's main thread spends a {n}-trial study (cProfile, {wall:.0f} s under the "
          "profiler):\n")
    print("| part | s | per trial ms |\n|---|---:|---:|")
    for label, fragments in GROUPS:
        s = cumulative(stats, fragments)
        print(f"| {label} | {s:.1f} | {1000 * s / n:.1f} |")
    print(f"| whole driver (main thread) | {stats.total_tt:.1f} | {1000 * stats.total_tt / n:.1f} |")  # type: ignore[attr-defined]


def throughput(spec_path: Path, storage: Path, trials: int, epochs: int, root: Path = REPO,
               label: str = "this checkout") -> None:
    """Many short epochs: results per second the driver takes in (every result goes through Tune's
    loggers, ASHA, our callbacks and the searcher's intermediate value in Optuna's storage)."""
    name = f"tp{trials}x{epochs}"
    overrides = ["--set", f"budget.max_epochs={epochs}", "--set", f"budget.grace_period={epochs}"]
    wall, _, _ = run_cli([str(spec_path), "--storage", str(storage), "--run", name, "--num-samples", str(trials), *overrides],
                         root=root)
    results = []
    for path in (storage / "zero_cost" / name).glob("trial_*/result.json"):
        results += [json.loads(line)["timestamp"] for line in path.read_text().splitlines() if line.strip()]
    span = max(results) - min(results)
    print(f"\n{label}: results throughput: {trials} trials x {epochs} epochs = {len(results)} results in {span:.1f} s from the "
          f"first to the last ({len(results) / span:.0f} results/s; whole command {wall:.1f} s)")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--with-10k", action="store_true", help="add 10,000 trials (about 30 minutes here)")
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--throughput", type=int, nargs=2, default=None, metavar=("TRIALS", "EPOCHS"),
                        help="also a study of TRIALS trials x EPOCHS epochs: results per second")
    parser.add_argument("--baseline", metavar="REV", help="also run the CLI of this git revision, side by side")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes + ([10000] if args.with_10k else [])))
    print(machine())
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp, \
            (worktree(args.baseline) if args.baseline else nullcontext()) as base:
        where = Path(tmp)
        spec_path = write_spec(where)
        roots = {"this checkout": REPO, **({f"baseline {args.baseline}": base} if base is not None else {})}
        rows = []
        for n in sizes:
            loop = in_process(spec_path, n, where, args.window)
            for label, root in roots.items():
                cli = platform(spec_path, n, where / label.replace(" ", "_"), args.window, root)
                rows.append((n, label, cli, loop))
                print(f"  {n} trials, {label}: CLI {cli['wall']:.1f} s ({cli['status']}, {cli['told']} told), "
                      f"in-process loop {loop['wall']:.1f} s", flush=True)
        print(f"\n| trials | checkout | CLI wall s | tuning s | in-process s | CLI / loop (whole) | CLI s/trial per "
              f"{args.window}-trial window | loop s/trial per window | last / first window: CLI, loop | driver peak MB | "
              "run folder MB | KB/trial | --report s | --runs s |")
        print("|---:|---|" + "---:|" * 12)
        for n, label, cli, loop in rows:
            cw, lw = cli["windows"], loop["windows"]
            growth = f"{cw[-1] / cw[0]:.2f}, {lw[-1] / lw[0]:.2f}" if len(cw) > 1 else "-"
            print(f"| {n} | {label} | {cli['wall']:.1f} | {cli['tuning']:.1f} | {loop['wall']:.1f} | "
                  f"{cli['wall'] / loop['wall']:.2f}x | {', '.join(f'{w:.3f}' for w in cw)} | "
                  f"{', '.join(f'{w:.4f}' for w in lw)} | {growth} | {cli['peak_mb']:.0f} | {cli['folder_mb']:.1f} | "
                  f"{1000 * cli['folder_mb'] / n:.0f} | {cli['report_s']:.1f} | {cli['runs_s']:.1f} |")
        for label, root in roots.items():
            if args.profile:
                profile(spec_path, args.profile, where / f"{label.replace(' ', '_')}_profile", root, label)
            if args.throughput:
                throughput(spec_path, where / f"{label.replace(' ', '_')}_throughput", *args.throughput, root, label)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
