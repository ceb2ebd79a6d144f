"""Search quality per budget: ASHA + TPE (the platform's default) against random
search and against TPE without early stopping, at equal total trial-epochs.

    python benchmarks/search_quality.py [--reps 5] [--budget 16] [--plot FILE.png]

Every arm trains the real ``mdn_ramp`` family (smoke size) through the
platform's own trainable, searcher and scheduler (``studies.tune.tuner``), in one
Ray session, with the same seeds per repetition. An arm is only spec
overrides: ``search.sampler``, and for no early stopping ``budget.grace_period``
= max_epochs (ASHA's one rung is then the end), so any sampler a spec can name
is one more line in ARMS. Each run stops once it has spent BUDGET full trials'
worth of trial-epochs. The best validation metric
reached after every reported epoch, in the order the driver received them,
gives a best-vs-budget curve; the script prints mean and spread at a few
budgets and plots the curves.

    python benchmarks/search_quality.py --known-truth [--reps 10] [--trials 180]

The screening design's start (``search.startup: design``) against TPE's
random start (``random``, the platform's default_startup), Ray-free, on
benchmarks/known_truth.py's objectives: a sequential TPE + ASHA study as
``known_truth.simulate_study`` runs it, with the design's rows enqueued after
the baseline and TPE's n_startup_trials 1 + N (``simulate``, a copy of it
with that one change), same seeds per arm. What it costs the search: the
true (noise-free) full-budget loss of the config the study would pick (best
reported value among the complete trials) and of the best complete config,
at the same number of trials. What it buys the tables: the level-order
Spearman correlation with the truth at the first rung (strong factors: true
spread >= 20% of the largest) of the screening tables (design arm) and of
the modelled tables (both arms), and how often a null factor gets a mark.
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

    from studies.tune.tuner import build_scheduler, build_searcher, make_trainable, run_config, trial_dirname

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
    ap.add_argument("--known-truth", action="store_true",
                    help="design start vs random start on benchmarks/known_truth.py's objectives (Ray-free)")
    ap.add_argument("--trials", type=int, default=180, help="--known-truth: trials per simulated study")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (seeds) per arm (default 5; --known-truth 10)")
    ap.add_argument("--budget", type=int, default=16, help="total budget in full trials (x max_epochs trial-epochs)")
    ap.add_argument("--epochs", type=int, default=9, help="full budget of one trial (ASHA: grace 1, reduction 3)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    ap.add_argument("--plot", default=str(Path(__file__).with_name("search_quality.png")))
    args = ap.parse_args()
    if args.known_truth:
        known_truth_main(args.reps or 10, args.trials)
        return
    args.reps = args.reps or 5

    from studies.spec.study import load_spec, resolve_study_path
    from studies.tune.ray_session import ray_session

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


# ---------------------------------------------------------------- --known-truth: design start vs random start

KT_MAX_EPOCHS, KT_GRACE, KT_RF = 18, 2, 3
STARTS = ("random start", "design start")


def simulate(obj, *, seed: int, n_trials: int, design: list[dict]):  # noqa: ANN001, ANN201
    """``known_truth.simulate_study`` (TPE + ASHA, the baseline as trial 0) with
    ``design`` enqueued after the baseline and TPE's startup 1 + len(design);
    without a design, the platform's default random startup."""
    import known_truth as kt
    import optuna
    import pandas as pd

    from studies.runs.trials import STATUS_COMPLETE, STATUS_PRUNED, RunTrials
    from studies.spec.study import default_startup

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = 1 + len(design) if design else default_startup(n_trials)
    study = optuna.create_study(direction="minimize" if obj.mode == "min" else "maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
                                pruner=optuna.pruners.NopPruner())
    for point in [kt.active_config(obj, obj.baseline), *design]:
        study.enqueue_trial(point)
    bracket = kt.AshaBracket(KT_GRACE, KT_MAX_EPOCHS, KT_RF)
    sign = -1.0 if obj.mode == "min" else 1.0
    names = [f.name for f in obj.factors]
    rows, history = [], []
    for i in range(n_trials):
        trial = study.ask()
        config = kt._suggest(trial, obj.factors)
        trial_id = f"{seed & 0xFFFFF:05x}_{i:05d}"
        curve = obj.trajectory(config, np.random.default_rng([seed, i]), max_epochs=KT_MAX_EPOCHS)
        for epoch in range(1, KT_MAX_EPOCHS + 1):
            value = float(curve[epoch - 1])
            history.append({"trial_id": trial_id, obj.metric: value, "epoch": epoch})
            if not bracket.on_result(trial_id, epoch, sign * value):
                break
        complete = epoch >= KT_MAX_EPOCHS
        frozen = study.tell(trial, value if complete else None,
                            state=optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.PRUNED)
        rows.append({"trial_id": trial_id, "status": STATUS_COMPLETE if complete else STATUS_PRUNED, "epochs": epoch,
                     f"last_{obj.metric}": value, **{p: frozen.params.get(p) for p in names},
                     "optuna_number": frozen.number, "true_f": obj.f(config)})
    return RunTrials(trials=pd.DataFrame(rows), history=pd.DataFrame(history), params=names)


def _rho(est, truth) -> float:  # noqa: ANN001
    from scipy import stats

    est = np.asarray(est, dtype=float)
    if not np.isfinite(est).all():
        return float("nan")
    return float(stats.spearmanr(est, truth)[0]) if np.ptp(est) > 0 else 0.0


def _known_truth_run(obj, seed: int, n_trials: int, start: str, truths: dict) -> dict:  # noqa: ANN001
    from analysis_truth import rung_truth

    from studies.report.ablation import values_at_epoch
    from studies.report.analysis import configs_at
    from studies.report.modelled import modelled_tables
    from studies.report.screening import screening_tables
    from studies.spec.screening_design import design_size, screening_design

    size = design_size(obj.factors, obj.bins, n_trials)
    design = screening_design(obj.factors, obj.bins, size.n, seed) if start == "design start" else []
    run = simulate(obj, seed=seed, n_trials=n_trials, design=design)
    t = run.trials
    done = t[t["status"] == "complete"]
    pick = done.loc[done[f"last_{obj.metric}"].idxmin()] if obj.mode == "min" else done.loc[done[f"last_{obj.metric}"].idxmax()]
    spread = {f.name: float(np.ptp(truths.setdefault((f.name, KT_GRACE), rung_truth(obj, f.name, KT_GRACE))))
              for f in obj.factors}
    strong = [n for n, s in spread.items() if s >= 0.2 * max(spread.values())]
    out = {"objective": obj.name, "start": start, "seed": seed, "design_n": len(design),
           "picked_true_f": float(pick["true_f"]), "best_true_f": float(done["true_f"].min())}
    values = values_at_epoch(run, obj.metric, KT_GRACE)
    configs = configs_at(run, values, [f.name for f in obj.factors])
    modelled = modelled_tables(configs, values, obj.factors, baseline=obj.baseline, bins=obj.bins, mode=obj.mode,
                               rung=KT_GRACE, seed=seed)
    tables = {"modelled": {m.factor: m.table["marginal"].to_numpy(float) for m in modelled.tables}}
    flags = {"modelled": [bool((m.table["sig"] != "").any()) for m in modelled.tables if m.factor in obj.null_factors]}
    if design:
        screening = screening_tables(run, obj.factors, design=design, bins=obj.bins, baseline=obj.baseline,
                                     metric=obj.metric, mode=obj.mode, rung=KT_GRACE, seed=seed, n_boot=0)
        assert screening is not None and screening.n_at_rung == len(design)
        tables["screening"] = {s.factor: s.table["mean"].to_numpy(float) for s in screening.tables}
        flags["screening"] = [bool((s.table["sig"] != "").any()) for s in screening.tables if s.factor in obj.null_factors]
    for kind, by_factor in tables.items():
        out[f"{kind}_rho"] = float(np.nanmean([_rho(by_factor[n], truths[(n, KT_GRACE)]) for n in strong]))
        out[f"{kind}_null_flags"] = f"{sum(flags[kind])}/{len(flags[kind])}"
    return out


def known_truth_main(reps: int, n_trials: int) -> None:
    import known_truth as kt
    import pandas as pd

    rows = []
    started = time.perf_counter()
    for make in kt.OBJECTIVES.values():
        obj = make()
        truths: dict = {}
        for seed in range(reps):
            for start in STARTS:
                rows.append(_known_truth_run(obj, seed, n_trials, start, truths))
                r = rows[-1]
                print(f"{obj.name:10s} {start:13s} seed {seed}: picked f {r['picked_true_f']:.4f}, "
                      f"best f {r['best_true_f']:.4f}", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    print(f"\n{reps} seeds, {n_trials} trials, TPE + ASHA (grace {KT_GRACE}, rf {KT_RF}, max {KT_MAX_EPOCHS}); "
          f"{time.perf_counter() - started:.0f} s in all\n")
    lines = []
    for (objective, start), g in df.groupby(["objective", "start"], sort=False):
        line = {"objective": objective, "start": start, "design rows": int(g["design_n"].iloc[0]),
                "true f of the pick": f"{g['picked_true_f'].mean():.4f} ± {g['picked_true_f'].std(ddof=1):.4f}",
                "best true f": f"{g['best_true_f'].mean():.4f} ± {g['best_true_f'].std(ddof=1):.4f}",
                "modelled rho": g["modelled_rho"].mean(), "modelled null flags": _sum_flags(g["modelled_null_flags"])}
        if "screening_rho" in g and g["screening_rho"].notna().any():
            line["screening rho"] = g["screening_rho"].mean()
            line["screening null flags"] = _sum_flags(g["screening_null_flags"])
        lines.append(line)
    print(pd.DataFrame(lines).to_markdown(index=False, floatfmt=".2f"))
    for objective, g in df.groupby("objective", sort=False):
        d = g[g["start"] == "design start"].set_index("seed")["picked_true_f"]
        r = g[g["start"] == "random start"].set_index("seed")["picked_true_f"]
        wins = int((d < r).sum() if kt.OBJECTIVES[objective]().mode == "min" else (d > r).sum())
        print(f"{objective}: design start's pick is better than random start's in {wins}/{len(d)} seeds "
              f"(mean paired difference {float((d - r).mean()):+.4f})")


def _sum_flags(cells) -> str:  # noqa: ANN001
    pairs = [tuple(int(x) for x in c.split("/")) for c in cells if isinstance(c, str)]
    return f"{sum(a for a, _ in pairs)}/{sum(b for _, b in pairs)}"


if __name__ == "__main__":
    main()
