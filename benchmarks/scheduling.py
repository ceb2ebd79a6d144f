"""Scheduling efficiency: a study of N short trials through ``studies/run.py``
against the same configs trained without Ray.

    python benchmarks/scheduling.py [--trials 12] [--epochs 10] [--workers 2]

One run does, side by side:

1. the platform: ``python studies/run.py mdn_ramp --smoke`` sized so that every
   trial does the same work (ASHA's grace period = the full budget, so nothing
   is stopped early), ``--max-concurrent WORKERS``, as a user runs it;
2. the configs that run chose, replayed one after another in one plain
   process on one core (the in-process loop a researcher would write);
3. the same configs over a ``concurrent.futures`` process pool of WORKERS
   processes (the plain parallel alternative).

The useful work is each trial's time in the in-process loop (build + epochs,
imports excluded). Efficiency = useful work / (workers x wall time); the
overhead per trial = (workers x wall - useful work) / trials. For the platform
it also splits the wall time into start-up, Ray, tuning (``Tuner.fit``: trial
actors start, trials run, Tune's turnover between trials) and the report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_CACHE, load_study, machine, read_trials, replay, run_cli  # noqa: E402

STUDY = "mdn_ramp"

_worker_state: dict = {}


def _overrides(epochs: int, sequences: int) -> list[str]:
    return [f"budget.max_epochs={epochs}", f"budget.grace_period={epochs}", f"budget.checkpoint_every={epochs}",
            f"config.num_sequences={sequences}"]


def _init_worker(overrides: list[str], cache_dir: str) -> None:
    import torch
    import torch._dynamo  # noqa: F401  (a fresh process's first optimizer imports it: 2-4 s, paid once per process)

    torch.set_num_threads(1)
    _worker_state["spec"], _worker_state["data"] = load_study(STUDY, smoke=True, overrides=overrides, cache_dir=Path(cache_dir))


def _replay_one(job: tuple[dict, int]) -> float:
    return replay(_worker_state["spec"], _worker_state["data"], *job)


def baseline_main(jobs_file: Path, workers: int, out_file: Path) -> None:
    """Child process: replay the jobs in-process (workers=1) or over a pool."""
    jobs = json.loads(jobs_file.read_text())
    overrides, cache_dir = jobs["overrides"], jobs["cache_dir"]
    work = [(j["config"], j["epochs"]) for j in jobs["trials"]]
    if workers == 1:
        _init_worker(overrides, cache_dir)
        times = [_replay_one(job) for job in work]
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(overrides, cache_dir)) as pool:
            times = list(pool.map(_replay_one, work))
    out_file.write_text(json.dumps({"times": times}))


def _run_baseline(jobs_file: Path, workers: int, tmp: Path) -> tuple[float, list[float]]:
    out = tmp / f"baseline_{workers}.json"
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--_baseline", str(jobs_file), "--workers", str(workers), "--_out", str(out)],
                   check=True)
    wall = time.perf_counter() - started
    return wall, json.loads(out.read_text())["times"]


def _platform_breakdown(run_dir: Path, t0: float, t_exit: float, trials: list, useful: dict[str, float]) -> list[tuple[str, float]]:
    info = json.loads((run_dir / "run.json").read_text())
    in_trial = [t.time_total_s - useful[t.trial_id] for t in trials]
    return [
        ("CLI start -> Ray starting (imports, spec, data)", info["started"] - t0),
        ("Ray start, Tuner set-up, reading the results", info["finished"] - info["started"] - info["tune_s"]),
        ("tuning (Tuner.fit): trial actors start, trials run", info["tune_s"]),
        ("  of which in-trial overhead vs in-process, per trial (median)", median(in_trial)),
        ("after tuning: Ray shutdown, tables, plots, HParams", t_exit - info["finished"]),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=20, help="epochs per trial (all run: no early stopping)")
    ap.add_argument("--sequences", type=int, default=96, help="motion sequences in the data set (trial size)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    ap.add_argument("--json", metavar="FILE", help="also write the numbers here")
    ap.add_argument("--_baseline", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--_out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._baseline:
        return baseline_main(args._baseline, args.workers, args._out)

    print(machine())
    overrides = _overrides(args.epochs, args.sequences)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # Build the data cache first so that no side pays for generating it.
        load_study(STUDY, smoke=True, overrides=overrides, cache_dir=Path(args.cache_dir))
        sets = [a for o in overrides for a in ("--set", o)]
        t0 = time.time()
        wall_platform, _ = run_cli(STUDY, "--smoke", *sets, "--num-samples", str(args.trials), "--max-concurrent",
                                   str(args.workers), "--num-cpus", str(args.workers), "--storage", str(tmp / "results"),
                                   "--run", "bench", "--cache-dir", args.cache_dir)
        t_exit = time.time()
        run_dir = tmp / "results" / STUDY / "bench"
        trials = read_trials(run_dir)
        jobs = {"overrides": overrides, "cache_dir": args.cache_dir,
                "trials": [{"config": t.config, "epochs": t.epochs} for t in trials]}
        jobs_file = tmp / "jobs.json"
        jobs_file.write_text(json.dumps(jobs))
        wall_seq, times_seq = _run_baseline(jobs_file, 1, tmp)
        wall_pool, _ = _run_baseline(jobs_file, args.workers, tmp)
        by_id = dict(zip((t.trial_id for t in trials), times_seq))
        split = _platform_breakdown(run_dir, t0, t_exit, trials, by_id)
        tune_s = json.loads((run_dir / "run.json").read_text())["tune_s"]

    useful = sum(times_seq)
    n, w = len(trials), args.workers
    print(f"\n{n} trials x {args.epochs} epochs of {STUDY} (smoke size, {args.sequences} sequences); "
          f"useful work {useful:.1f} s (in-process, median {median(times_seq):.2f} s per trial); "
          f"ideal on {w} workers {useful / w:.1f} s\n")
    rows = [("in-process loop, 1 worker", 1, wall_seq), (f"process pool, {w} workers", w, wall_pool),
            (f"studies/run.py, {w} workers", w, wall_platform),
            ("studies/run.py, tuning alone (Tuner.fit)", w, tune_s)]
    print("| way | workers | wall s | efficiency | overhead per trial s | vs in-process loop |")
    print("|---|---:|---:|---:|---:|---:|")
    numbers = {"trials": n, "epochs": args.epochs, "useful_s": useful, "ways": {}}
    for name, k, wall in rows:
        eff = useful / (k * wall)
        over = (k * wall - useful) / n
        print(f"| {name} | {k} | {wall:.1f} | {eff:.0%} | {over:.2f} | {wall_seq / wall:.2f}x |")
        numbers["ways"][name] = {"wall_s": wall, "efficiency": eff, "overhead_per_trial_s": over}
    print("\nstudies/run.py wall time, split:")
    for what, seconds in split:
        print(f"  {what:55s} {seconds:6.2f} s")
        numbers.setdefault("platform_split", {})[what] = seconds
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
