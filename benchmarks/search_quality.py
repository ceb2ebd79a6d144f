"""Search quality per budget: ASHA + TPE (the platform's default) against random
search and against TPE without early stopping, at equal total trial-epochs.

    python benchmarks/search_quality.py [--reps 5] [--budget 16] [--plot FILE.png]

Every arm trains the real ``mdn_ramp`` family (smoke size) through the
platform's own trainable, searcher and scheduler (``studies.tuner``), in one
Ray session, with the same seeds per repetition. An arm is only spec
overrides: ``search.sampler``, and for no early stopping ``budget.grace_period``
= max_epochs (ASHA's one rung is then the end), so any sampler a spec can name
is one more line in ARMS. Each run stops once it has spent BUDGET full trials'
worth of trial-epochs. The best validation metric
reached after every reported epoch, in the order the driver received them,
gives a best-vs-budget curve; the script prints mean and spread at a few
budgets and plots the curves.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_CACHE, load_study, machine  # noqa: E402

STUDY = "mdn_ramp"
ARMS: dict[str, tuple[str, bool]] = {  # arm -> (search.sampler, ASHA stops trials early)
    "ASHA + TPE": ("tpe", True),
    "TPE, no early stopping": ("tpe", False),
    "random search": ("random", False),
}


def arm_overrides(arm: str, epochs: int) -> list[str]:
    sampler, early_stopping = ARMS[arm]
    return [f"search.sampler={sampler}", f"budget.grace_period={1 if early_stopping else epochs}"]


class _Budget:
    """Counts reported epochs across all trials (one result = one trial-epoch)
    and records the best metric so far after each."""

    def __init__(self, limit: int, metric: str, mode: str):
        self.limit, self.metric, self.sign = limit, metric, (1.0 if mode == "min" else -1.0)
        self.best: list[float] = []

    def record(self, result: dict) -> None:
        if len(self.best) >= self.limit or self.metric not in result:
            return
        value = self.sign * float(result[self.metric])
        self.best.append(min(value, self.best[-1]) if self.best else value)


def _run_arm(arm: str, spec, data, budget_epochs: int, rep: int, root: Path, workers: int) -> list[float]:
    from ray import tune
    from ray.tune.stopper import Stopper

    from studies.tuner import build_scheduler, build_searcher, make_trainable, run_config, trial_dirname

    run_dir = root / f"{''.join(ch for ch in arm if ch.isalnum())}_{rep}"
    run_dir.mkdir(parents=True)
    budget = _Budget(budget_epochs, spec.metric, spec.mode)

    class Recorder(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
            budget.record(result)

    class Spent(Stopper):
        def __call__(self, trial_id, result):  # noqa: ANN001
            return False

        def stop_all(self) -> bool:
            return len(budget.best) >= budget_epochs

    rc = run_config(spec, run_dir, [Recorder()])
    rc.stop = Spent()
    tuner = tune.Tuner(
        make_trainable(spec, data), param_space=spec.trial_config(),
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, search_alg=build_searcher(spec, run_dir),
                                    scheduler=build_scheduler(spec),
                                    num_samples=10_000, max_concurrent_trials=workers, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=rc)
    tuner.fit()
    return [budget.sign * b for b in budget.best]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions (seeds) per arm")
    ap.add_argument("--budget", type=int, default=16, help="total budget in full trials (x max_epochs trial-epochs)")
    ap.add_argument("--epochs", type=int, default=9, help="full budget of one trial (ASHA: grace 1, reduction 3)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    ap.add_argument("--plot", default=str(Path(__file__).with_name("search_quality.png")))
    args = ap.parse_args()

    from studies.ray_session import ray_session
    from studies.spec import load_spec, resolve_study_path

    print(machine())
    budget_epochs = args.budget * args.epochs
    curves: dict[str, list[list[float]]] = {arm: [] for arm in ARMS}
    started = time.perf_counter()
    with ray_session(None, num_cpus=args.workers), tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            overrides = [f"budget.max_epochs={args.epochs}", "budget.reduction_factor=3",
                         f"budget.checkpoint_every={args.epochs}", f"budget.num_samples={4 * args.budget}",
                         f"seed={rep}"]
            spec, data = load_study(STUDY, smoke=True, overrides=overrides, cache_dir=Path(args.cache_dir))
            for arm in ARMS:  # interleaved, so that machine load drifts hit every arm alike
                spec = load_spec(resolve_study_path(STUDY), smoke=True, overrides=[*overrides, *arm_overrides(arm, args.epochs)])
                t = time.perf_counter()
                curve = _run_arm(arm, spec, data, budget_epochs, rep, Path(tmp), args.workers)
                curves[arm].append(curve)
                print(f"rep {rep} {arm:24s} best {spec.metric} {curve[-1]:.4f} after {len(curve)} trial-epochs "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)

    mode_best = np.min if spec.mode == "min" else np.max
    n = min(len(c) for arm in ARMS for c in curves[arm])
    arr = {arm: np.array([c[:n] for c in curves[arm]]) for arm in ARMS}
    marks = sorted({max(1, round(n * f)) for f in (0.25, 0.5, 1.0)})
    print(f"\nbest {spec.metric} ({spec.mode}) reached, mean ± sd over {args.reps} seeds, "
          f"at a budget of N full trials ({args.epochs} epochs each); {time.perf_counter() - started:.0f} s in all\n")
    print("| arm | " + " | ".join(f"{m / args.epochs:g} trials" for m in marks) + " | best seed |")
    print("|---|" + "---:|" * (len(marks) + 1))
    for arm in ARMS:
        cells = [f"{arr[arm][:, m - 1].mean():.4f} ± {arr[arm][:, m - 1].std(ddof=1) if args.reps > 1 else 0:.4f}" for m in marks]
        print(f"| {arm} | " + " | ".join(cells) + f" | {mode_best(arr[arm][:, -1]):.4f} |")
    ref = arr["random search"][:, -1]
    for arm in [a for a in ARMS if a != "random search"]:
        wins = int(np.sum(arr[arm][:, -1] < ref if spec.mode == "min" else arr[arm][:, -1] > ref))
        print(f"{arm} beats random search at the full budget in {wins}/{args.reps} seeds")
    _plot(arr, args.epochs, spec.metric, spec.mode, args.plot)
    print(f"plot: {args.plot}")


def _plot(arr: dict[str, np.ndarray], epochs: int, metric: str, mode: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for arm, values in arr.items():
        x = np.arange(1, values.shape[1] + 1) / epochs
        lo, mid, hi = np.percentile(values, [25, 50, 75], axis=0)
        ax.plot(x, mid, label=arm)
        ax.fill_between(x, lo, hi, alpha=0.2)
    ax.set_xlabel(f"budget spent (full trials of {epochs} epochs)")
    ax.set_ylabel(f"best {metric} so far ({'lower' if mode == 'min' else 'higher'} is better)")
    ax.set_yscale("log")
    ax.set_title("mdn_ramp: median and quartiles over seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
