"""Memory per node with 1 vs 4 concurrent trials: is the data set copied per trial?

    python benchmarks/memory.py [--small 500] [--large 8000] [--concurrent 1 4]

Runs the ``mdn_ramp`` study (smoke model, one epoch per trial) through
``studies/run.py`` with a small and a large data set, each at 1 and at 4
trials at once (a local Ray with that many logical CPUs), and samples every
process of the run (driver, Ray's own processes, trial workers) every 0.2 s:

- node memory: the sum of PSS (proportional set size: shared pages, the object
  store's included, are split among the processes that map them, so the sum is
  what the node really holds);
- per trial worker: USS (memory no other process shares).

Every process costs its own baseline (Python, torch: a few hundred MB), so the
data set's share is read from the difference between the large and the small
data set. Shared through the object store, the large data set adds the same
few copies (driver, object store) at 1 and at 4 trials at once, and nothing to
a worker's USS; copied per trial, it would add one more data set per extra
concurrent trial, and one data set to every worker's USS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import median

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_CACHE, REPO, load_study, machine  # noqa: E402

STUDY = "mdn_ramp"
MB = 1024 * 1024


def _is_trial_worker(proc: psutil.Process) -> bool:
    try:
        title = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return title.startswith("ray::") and "IDLE" not in title and ("ImplicitFunc" in title or "train" in title)


class Sampler(threading.Thread):
    """Polls a process tree; keeps the peak node PSS and each trial worker's peak USS."""

    def __init__(self, root_pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.every = psutil.Process(root_pid), every
        self.peak_pss = 0
        self.worker_uss: dict[int, int] = {}
        self.max_workers = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            pss, workers = 0, 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                except psutil.Error:
                    continue
                pss += info.pss
                if _is_trial_worker(p):
                    workers += 1
                    self.worker_uss[p.pid] = max(self.worker_uss.get(p.pid, 0), info.uss)
            self.peak_pss = max(self.peak_pss, pss)
            self.max_workers = max(self.max_workers, workers)
            time.sleep(self.every)


def _measure(concurrent: int, overrides: list[str], cache_dir: str, storage: Path) -> dict:
    sets = [a for o in overrides for a in ("--set", o)]
    run = f"c{concurrent}-{len(list(storage.iterdir())) if storage.is_dir() else 0}"
    cmd = [sys.executable, str(REPO / "studies" / "run.py"), STUDY, "--smoke", *sets, "--num-samples", str(concurrent),
           "--max-concurrent", str(concurrent), "--num-cpus", str(concurrent), "--storage", str(storage / run),
           "--run", run, "--cache-dir", cache_dir]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    out, _ = proc.communicate()
    sampler.done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"studies/run.py failed ({proc.returncode}):\n{out[-3000:]}")
    return {"peak_pss": sampler.peak_pss, "worker_uss": median(sampler.worker_uss.values()) if sampler.worker_uss else 0,
            "max_workers": sampler.max_workers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=500, help="sequences in the small data set")
    ap.add_argument("--large", type=int, default=8000, help="sequences in the large data set")
    ap.add_argument("--concurrent", type=int, nargs=2, default=[1, 4], metavar=("FEW", "MANY"))
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    args = ap.parse_args()
    if not os.path.exists("/proc/self/smaps_rollup"):
        sys.exit("this benchmark needs Linux (PSS/USS from /proc)")

    print(machine())
    sizes = {}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.large):
            overrides = [f"config.num_sequences={n}", "budget.max_epochs=1", "budget.grace_period=1",
                         "budget.checkpoint_every=1"]
            _, data = load_study(STUDY, smoke=True, overrides=overrides, cache_dir=Path(args.cache_dir))  # cache first
            sizes[n] = sum(a.nbytes for a in data.values()) / MB
            del data
            for k in args.concurrent:
                m = results[n, k] = _measure(k, overrides, args.cache_dir, Path(tmp))
                print(f"{n} sequences ({sizes[n]:.1f} MB), {k} at once: peak node PSS {m['peak_pss'] / MB:.0f} MB, "
                      f"worker USS {m['worker_uss'] / MB:.0f} MB ({m['max_workers']} workers seen)", flush=True)
    delta = sizes[args.large] - sizes[args.small]
    print(f"\ndata sets: {sizes[args.small]:.1f} MB and {sizes[args.large]:.1f} MB (difference {delta:.1f} MB)\n")
    print("| trials at once | node PSS, small data MB | node PSS, large data MB | large - small, in data sets "
          "| worker USS large - small MB |")
    print("|---:|---:|---:|---:|---:|")
    extra = {}
    for k in args.concurrent:
        small, large = results[args.small, k], results[args.large, k]
        extra[k] = (large["peak_pss"] - small["peak_pss"]) / MB
        print(f"| {k} | {small['peak_pss'] / MB:.0f} | {large['peak_pss'] / MB:.0f} | {extra[k] / delta:.2f} "
              f"| {(large['worker_uss'] - small['worker_uss']) / MB:+.0f} |")
    few, many = args.concurrent
    per_trial = (extra[many] - extra[few]) / (many - few) / delta
    print(f"\ndata set copies per extra concurrent trial: {per_trial:.2f} (a copy per trial would be 1.00)")
    print(f"node memory per extra concurrent trial (process baseline, small data): "
          f"{(results[args.small, many]['peak_pss'] - results[args.small, few]['peak_pss']) / MB / (many - few):.0f} MB")


if __name__ == "__main__":
    main()
