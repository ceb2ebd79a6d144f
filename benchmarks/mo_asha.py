"""Multi-objective ASHA against no early stopping: trial-epochs to a given hypervolume.

    python benchmarks/mo_asha.py [--seeds 10] [--budget 2000] [--workers 4] [--plot FILE.png]

Question: with the same sampler (Optuna's multi-objective TPE, ask/tell) and the
same budget in trial-epochs, does the platform's ``MultiObjectiveASHA``
(studies/tune/mo_asha.py) reach a given hypervolume sooner than running every trial
to the end? Ray-free and simulated, so that ten seeds of several hundred
trials each take a few minutes: the real scheduler object decides stop/continue
on stub ``ray.tune.experiment.Trial`` objects (as tests/studies/tune/test_mo_asha.py
drives it), W asynchronous workers are simulated with an event queue.

Objective (both minimised): a DTLZ2-shaped pair of 4 parameters,

    angle in [0, 1], width in [0, 1], lr in [1e-4, 1] (log), optimizer in {sgd, adam, rmsprop}
    g(x)     = 2 (width - 0.6)^2 + 0.15 (log10 lr + 2)^2 + penalty[optimizer]
    final(x) = (1 + g(x)) * (cos(angle pi/2), sin(angle pi/2))
    c(x)     = 0.2 + g(x) + slow[optimizer] + 0.1 max(0, -2 - log10 lr)
    reported at epoch e = (1 + g + c (1/e - 1/27)) * (cos, sin) + noise

penalty = {sgd: 0, adam: 0.01, rmsprop: 0.05}, slow = {sgd: 0.10, adam: 0, rmsprop: 0.03}.
Why this shape: ``angle`` only moves a config along the front, the other three
only set how far from it the config ends (g), so the Pareto front is the
quarter circle of radius 1 (g = 0: width 0.6, lr 1e-2, sgd) and its hypervolume
is known exactly. The curve's mean ends at final(x) at epoch 27 (as
known_truth.py's curves do), starts above it by c(x), which grows with g (bad
configs also learn slowly: early epochs are informative), and is larger for
sgd and for small learning rates (slow starters: the best optimizer looks worse
than adam until about epoch 7, so at rungs 1 and 3, a mild version of the trap
every successive halving falls into). Noise: sd 0.02 per objective and result, half of its
variance fixed for a trial's whole curve (a data split), half fresh per epoch.
Epochs take 0.7-1.3 time units, fixed per trial, so workers free up out of step.

Arms, same seeds: (a) MO-ASHA + TPE, (b) TPE without early stopping, (c) random
search without stopping (a floor), (d) MO-ASHA + random search (the scheduler
without the sampler's interaction with pruned trials). Each arm runs W workers;
a trial is asked for when a worker frees up (TPESampler(seed=seed), Optuna's
defaults: 10 random startup trials); a trial that reaches 27 epochs is told
COMPLETE with its last reported pair, one MO-ASHA stopped is told PRUNED (as
studies/tune/optuna_bridge.py does). ASHA: grace 1, reduction factor 3, max_t 27,
one bracket (rungs 1, 3, 9, 27). Trial i of a seed draws its noise and speed
from ``default_rng([seed, i])`` in every arm. An arm stops after BUDGET
reported epochs (trials still running then are cut off, unfinished).

Measure: after each reported epoch, the hypervolume of the *noise-free*
final(x) of every trial that has reached 27 epochs so far (the truth of the
full-budget configs; the front is taken over them, so this is what a perfect
final re-evaluation of the finished trials would show), against one fixed
reference point for every arm and seed, (1.1, 1.1): ``studies.spec.pareto.reference_point``
of the true front (nadir (1, 1) plus 10% of its range). Reported as a percentage
of the true front's hypervolume, 1.21 - pi/4 = 0.4246 (checked against the
hypervolume of 20,001 points on the front). Targets: 60%, 70% and 80% of it
(within 2000 trial-epochs 90% is rare for every arm).

Diagnostics printed after the table: where MO-ASHA stopped trials; how often its
first rung let through trials at the two ends of the front (angle within 5% of
0 or 1: next to an axis few points can dominate them, whatever their distance g) and how many of those
end outside the reference box; the share of full trials that add no
hypervolume; and, for MO-ASHA + TPE, the share of PRUNED trials in TPE's
"good" group at each ask. Optuna 5's multi-objective TPE fills that group,
ceil(10%) of the COMPLETE and PRUNED trials, with COMPLETE trials first and then
with PRUNED ones, and since a multi-objective trial holds no intermediate value
the pruned ones all score alike and go in by trial number: the earliest trials
ASHA stopped (random startup trials, mostly stopped at epoch 1) count as "good".
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402  (puts the repository on sys.path)

MAX_EPOCHS, GRACE, RF = 27, 1, 3
OPTIMIZERS = ("sgd", "adam", "rmsprop")
PENALTY = {"sgd": 0.0, "adam": 0.01, "rmsprop": 0.05}
SLOW = {"sgd": 0.10, "adam": 0.0, "rmsprop": 0.03}
NOISE_SD, PERSIST = 0.02, 0.5
MODES = ["min", "min"]
ARMS: dict[str, tuple[str, bool]] = {  # arm -> (sampler, MO-ASHA stops trials)
    "MO-ASHA + TPE": ("tpe", True),
    "TPE, no early stopping": ("tpe", False),
    "random search, no stopping": ("random", False),
    "MO-ASHA + random search": ("random", True),
    "MO-ASHA + TPE, full-budget good group": ("tpe_full", True),   # the platform's (studies/tune/mo_tpe.py)
}
TARGETS = (0.60, 0.70, 0.80)      # fractions of the true front's hypervolume (90% is rare within 2000 trial-epochs)
MARKS = (500, 1000, 2000)         # budgets (trial-epochs) for the hypervolume columns


# ---------------------------------------------------------------- objective


def suggest(trial: Any) -> dict[str, Any]:
    return {
        "angle": trial.suggest_float("angle", 0.0, 1.0),
        "width": trial.suggest_float("width", 0.0, 1.0),
        "lr": trial.suggest_float("lr", 1e-4, 1.0, log=True),
        "optimizer": trial.suggest_categorical("optimizer", list(OPTIMIZERS)),
    }


def distance(c: dict[str, Any]) -> float:
    """g(x): how far outside the unit quarter circle the config ends."""
    return 2 * (c["width"] - 0.6) ** 2 + 0.15 * (math.log10(c["lr"]) + 2) ** 2 + PENALTY[c["optimizer"]]


def direction(c: dict[str, Any]) -> np.ndarray:
    theta = c["angle"] * math.pi / 2
    return np.array([math.cos(theta), math.sin(theta)])


def final(c: dict[str, Any]) -> np.ndarray:
    """The noise-free pair after the full 27 epochs."""
    return (1 + distance(c)) * direction(c)


def decay(c: dict[str, Any]) -> float:
    return 0.2 + distance(c) + SLOW[c["optimizer"]] + 0.1 * max(0.0, -2 - math.log10(c["lr"]))


def true_front_hv(reference: np.ndarray) -> float:
    from studies.spec.pareto import hypervolume

    theta = np.linspace(0, math.pi / 2, 20_001)
    grid = np.column_stack([np.cos(theta), np.sin(theta)])
    hv = hypervolume(grid, MODES, reference)
    exact = reference[0] * reference[1] - math.pi / 4
    assert abs(hv - exact) < 1e-4, (hv, exact)
    return exact


# ---------------------------------------------------------------- simulation


@dataclass
class _Running:
    index: int
    ot: Any                      # the Optuna trial
    config: dict[str, Any]
    stub: Any                    # a stub ray Trial, or None without the scheduler
    speed: float                 # time units per epoch
    persistent: np.ndarray       # the trial's fixed share of the noise
    rng: np.random.Generator
    epoch: int = 0


@dataclass
class Outcome:
    hv: np.ndarray               # hv[k]: after k trial-epochs (hv[0] = 0)
    trials: int = 0
    complete: int = 0
    stopped_at: dict[int, int] = field(default_factory=dict)  # epoch -> trials stopped there
    outside: int = 0             # full trials whose true pair is not inside the reference box: they add nothing
    full_optimizers: dict[str, int] = field(default_factory=dict)
    # MO-ASHA's first-rung decisions, for trials at the two ends of the front (angle in the outer 5% on
    # either side) and the rest: [decisions, continued, continued that end outside the reference box]
    rung1: dict[str, list[int]] = field(default_factory=lambda: {"ends": [0, 0, 0], "middle": [0, 0, 0]})
    pruned_good: list[float] = field(default_factory=list)  # per TPE ask: share of PRUNED trials in the 'good' group


def simulate(arm: str, seed: int, budget: int, workers: int, reference: np.ndarray) -> Outcome:
    import optuna
    from optuna.trial import TrialState
    from ray.tune.experiment import Trial

    from studies.spec.pareto import hypervolume
    from studies.tune.mo_asha import MultiObjectiveASHA

    sampler_name, early_stopping = ARMS[arm]
    from studies.tune.mo_tpe import FullBudgetTPESampler

    sampler = (optuna.samplers.TPESampler(seed=seed) if sampler_name == "tpe"
               else FullBudgetTPESampler(seed=seed) if sampler_name == "tpe_full"
               else optuna.samplers.RandomSampler(seed=seed))
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    scheduler = (MultiObjectiveASHA(time_attr="epoch", metrics=["f1", "f2"], modes=MODES, max_t=MAX_EPOCHS,
                                    grace_period=GRACE, reduction_factor=RF) if early_stopping else None)
    out = Outcome(hv=np.zeros(budget + 1))
    heap: list[tuple[float, int, _Running]] = []
    finished: list[np.ndarray] = []
    current = 0.0

    def start(now: float) -> None:
        told = out.complete + sum(out.stopped_at.values())
        if sampler_name == "tpe" and told >= 10:  # past TPE's random startup
            # Optuna's MOTPE (5.0, _split_trials) fills its 'good' group, ceil(10%) of the COMPLETE and
            # PRUNED trials, with COMPLETE ones first, then PRUNED ones; in multi-objective a pruned
            # trial holds no intermediate value, so they all score alike and go in by trial number.
            n_below = math.ceil(0.1 * told)
            out.pruned_good.append(max(0, n_below - out.complete) / n_below)
        ot = study.ask()
        config = suggest(ot)
        rng = np.random.default_rng([seed, out.trials])
        speed = float(rng.uniform(0.7, 1.3))
        persistent = rng.normal(0.0, NOISE_SD * math.sqrt(PERSIST), 2)
        stub = None
        if scheduler is not None:
            stub = Trial("__fake", trial_id=f"t{out.trials:05d}", stub=True)
            scheduler.on_trial_add(None, stub)
        run = _Running(out.trials, ot, config, stub, speed, persistent, rng)
        heapq.heappush(heap, (now + speed, run.index, run))
        out.trials += 1

    for _ in range(workers):
        start(0.0)
    spent = 0
    while spent < budget:
        now, _, run = heapq.heappop(heap)
        run.epoch += 1
        spent += 1
        e = run.epoch
        mean = (1 + distance(run.config) + decay(run.config) * (1 / e - 1 / MAX_EPOCHS)) * direction(run.config)
        values = mean + run.persistent + run.rng.normal(0.0, NOISE_SD * math.sqrt(1 - PERSIST), 2)
        result = {"epoch": e, "f1": float(values[0]), "f2": float(values[1])}
        done = e >= MAX_EPOCHS
        stop = done
        if scheduler is not None:
            stop = scheduler.on_trial_result(None, run.stub, result) == "STOP" or done
            if e == GRACE:
                tally = out.rung1["ends" if min(run.config["angle"], 1 - run.config["angle"]) < 0.05 else "middle"]
                tally[0] += 1
                if not stop:
                    tally[1] += 1
                    tally[2] += not bool((final(run.config) < reference).all())
            if stop:
                scheduler.on_trial_complete(None, run.stub, result)  # as Tune does after a STOP
        if stop:
            if done:
                study.tell(run.ot, [result["f1"], result["f2"]], state=TrialState.COMPLETE)
                finished.append(final(run.config))
                out.outside += not bool((finished[-1] < reference).all())
                opt = run.config["optimizer"]
                out.full_optimizers[opt] = out.full_optimizers.get(opt, 0) + 1
                current = hypervolume(np.array(finished), MODES, reference)
                out.complete += 1
            else:
                study.tell(run.ot, state=TrialState.PRUNED)
                out.stopped_at[e] = out.stopped_at.get(e, 0) + 1
        out.hv[spent] = current
        if stop:
            if spent < budget:
                start(now)
        else:
            heapq.heappush(heap, (now + run.speed, run.index, run))
    return out


# ---------------------------------------------------------------- report


def epochs_to(hv: np.ndarray, level: float) -> float:
    """First trial-epoch count at which hv reaches ``level``; inf if never."""
    hit = np.flatnonzero(hv >= level)
    return float(hit[0]) if hit.size else math.inf


def _cell_epochs(values: np.ndarray, budget: int) -> str:
    reached = np.isfinite(values)
    if not reached.any():
        return f"not reached (0/{len(values)})"
    if reached.all():
        return f"{values.mean():.0f} ± {values.std(ddof=1) if len(values) > 1 else 0:.0f}"
    censored = np.where(reached, values, budget)  # an unreached seed counts as the whole budget: a lower bound
    return f"≥ {censored.mean():.0f} ({reached.sum()}/{len(values)})"


def _cell_hv(values: np.ndarray) -> str:
    return f"{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0:.1f}"


def _wins(per_arm: dict[str, np.ndarray], better: str) -> dict[str, int]:
    """Per seed, the best arm(s) (ties: each); better is 'min' or 'max'."""
    arms = list(per_arm)
    stacked = np.array([per_arm[a] for a in arms])
    best = stacked.min(axis=0) if better == "min" else stacked.max(axis=0)
    ok = np.isfinite(best)
    return {a: int(np.sum((stacked[i] == best) & ok)) for i, a in enumerate(arms)}


def report(results: dict[str, list[Outcome]], budget: int, true_hv: float) -> None:
    arms = list(results)
    n = len(next(iter(results.values())))
    marks = [m for m in MARKS if m <= budget] or [budget]
    pct = {a: np.array([o.hv for o in results[a]]) / true_hv * 100 for a in arms}
    to = {a: {t: np.array([epochs_to(o.hv, t * true_hv) for o in results[a]]) for t in TARGETS} for a in arms}
    at = {a: {m: pct[a][:, m] for m in marks} for a in arms}
    wins_to = {t: _wins({a: to[a][t] for a in arms}, "min") for t in TARGETS}
    wins_at = {m: _wins({a: at[a][m] for a in arms}, "max") for m in marks}

    print(f"\ntrial-epochs to reach a share of the true front's hypervolume, and hypervolume (% of the true front's) "
          f"at fixed budgets; mean ± sd over {n} seeds, [wins: seeds where the arm is best of all arms, ties count "
          f"for each]; '≥ x (k/{n})': reached in k seeds only, the others counted as the whole budget\n")
    head = ([f"to {t * 100:.0f}% HV" for t in TARGETS] + [f"HV% at {m}" for m in marks]
            + ["trials", "full trials"])
    print("| arm | " + " | ".join(head) + " |")
    print("|---|" + "---:|" * len(head))
    for a in arms:
        cells = [f"{_cell_epochs(to[a][t], budget)} [{wins_to[t][a]}]" for t in TARGETS]
        cells += [f"{_cell_hv(at[a][m])} [{wins_at[m][a]}]" for m in marks]
        cells += [f"{np.mean([o.trials for o in results[a]]):.0f}", f"{np.mean([o.complete for o in results[a]]):.1f}"]
        print(f"| {a} | " + " | ".join(cells) + " |")

    a, b = "MO-ASHA + TPE", "TPE, no early stopping"
    if a in results and b in results:
        print(f"\nhead to head, {a} vs {b}, per seed:")
        for t in TARGETS:
            x, y = to[a][t], to[b][t]
            print(f"  to {t * 100:.0f}%: {a} sooner in {int(np.sum(x < y))}/{n}, later in {int(np.sum(x > y))}/{n} "
                  f"(epochs {', '.join(_num(v) for v in x)} vs {', '.join(_num(v) for v in y)})")
        for m in marks:
            x, y = at[a][m], at[b][m]
            print(f"  HV at {m}: {a} higher in {int(np.sum(x > y))}/{n} "
                  f"({', '.join(f'{v:.1f}' for v in x)} vs {', '.join(f'{v:.1f}' for v in y)})")
    for arm in arms:
        if ARMS[arm][1]:
            stops: dict[int, int] = {}
            for o in results[arm]:
                for e, k in o.stopped_at.items():
                    stops[e] = stops.get(e, 0) + k
            total = sum(o.trials for o in results[arm])
            where = ", ".join(f"epoch {e}: {k / total * 100:.0f}%" for e, k in sorted(stops.items()))
            print(f"{arm}: trials stopped at {where} (of {total / n:.0f} trials a seed)")
            for part, label in (("ends", "angle in the outer 5% at either end"), ("middle", "the other angles")):
                d, c, bad = (sum(o.rung1[part][k] for o in results[arm]) for k in range(3))
                print(f"  at rung {GRACE}, {label}: {c / max(d, 1) * 100:.0f}% of {d / n:.0f} trials a seed go on, "
                      f"{bad / max(c, 1) * 100:.0f}% of those end outside the reference box")
    print("full trials (27 epochs) whose true pair lies outside the reference box, adding no hypervolume; "
          "optimizers of the full trials (sgd is the best one; it starts slow):")
    for arm in arms:
        full = sum(o.complete for o in results[arm])
        mix = ", ".join(f"{k} {sum(o.full_optimizers.get(k, 0) for o in results[arm]) / full * 100:.0f}%"
                        for k in OPTIMIZERS)
        print(f"  {arm}: outside {sum(o.outside for o in results[arm]) / full * 100:.0f}%; {mix}")
    if a in results:
        shares = [np.mean(o.pruned_good) for o in results[a] if o.pruned_good]
        firsts = [o.pruned_good[:100] for o in results[a] if o.pruned_good]
        print(f"{a}: PRUNED trials made up {np.mean(shares) * 100:.0f}% of TPE's 'good' group on average over "
              f"its asks ({np.mean([np.mean(f) for f in firsts]) * 100:.0f}% over the first 100 asks after startup)")


def _num(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.0f}"


def plot(results: dict[str, list[Outcome]], true_hv: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.3))
    for arm, outs in results.items():
        y = np.array([o.hv for o in outs]) / true_hv * 100
        x = np.arange(y.shape[1])
        mid, sd = y.mean(axis=0), y.std(axis=0, ddof=1) if len(outs) > 1 else np.zeros(y.shape[1])
        line, = ax.plot(x, mid, label=arm, lw=1.6, ls="-" if ARMS[arm][0].startswith("tpe") else "--")
        ax.fill_between(x, mid - sd, mid + sd, color=line.get_color(), alpha=0.15, lw=0)
    for t in TARGETS:
        ax.axhline(t * 100, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("trial-epochs spent (all trials, in time order)")
    ax.set_ylabel("hypervolume, % of the true front's")
    ax.set_ylim(max(0, min(60, ax.get_ylim()[0])), 100)
    ax.set_title(f"true hypervolume of the finished trials; mean ± sd over {len(next(iter(results.values())))} seeds",
                 fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="seeds (repetitions) per arm (5 were not enough: "
                    "seeds 0-4 and 5-9 disagree on the head-to-head)")
    ap.add_argument("--budget", type=int, default=2000, help="trial-epochs per arm and seed")
    ap.add_argument("--workers", type=int, default=4, help="simulated asynchronous workers")
    ap.add_argument("--plot", default=str(Path(__file__).with_name("mo_asha.png")))
    ap.add_argument("--arms", default="abcde", help="which arms, by letter: a MO-ASHA + Optuna's TPE, b TPE without "
                    "stopping, c random search, d MO-ASHA + random search, e MO-ASHA + the platform's TPE whose "
                    "good group holds full-budget trials only (default abcde)")
    args = ap.parse_args()
    if not args.arms or set(args.arms) - set("abcde"):
        ap.error("--arms: letters among a, b, c, d, e")
    arms = [a for letter, a in zip("abcde", ARMS) if letter in args.arms]

    import optuna

    from studies.spec.pareto import reference_point

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(machine())
    theta = np.linspace(0, math.pi / 2, 20_001)
    reference = reference_point(np.column_stack([np.cos(theta), np.sin(theta)]), MODES)
    true_hv = true_front_hv(reference)
    print(f"reference point {tuple(round(float(v), 4) for v in reference)}, true front's hypervolume {true_hv:.4f}; "
          f"{args.seeds} seeds x {len(arms)} arms, {args.budget} trial-epochs each, {args.workers} workers")
    started = time.perf_counter()
    results: dict[str, list[Outcome]] = {a: [] for a in arms}
    for seed in range(args.seeds):
        for arm in arms:  # interleaved, so that load drifts hit every arm alike
            t = time.perf_counter()
            o = simulate(arm, seed, args.budget, args.workers, reference)
            results[arm].append(o)
            good = (f", PRUNED trials {np.mean(o.pruned_good) * 100:.0f}% of TPE's good group"
                    if ARMS[arm] == ("tpe", True) and o.pruned_good else "")
            print(f"seed {seed} {arm:28s} HV {o.hv[-1] / true_hv * 100:5.1f}% of the true front, {o.trials} trials, "
                  f"{o.complete} full{good} ({time.perf_counter() - t:.1f} s)", flush=True)
    report(results, args.budget, true_hv)
    plot(results, true_hv, args.plot)
    print(f"\nplot: {args.plot}")
    print(f"{time.perf_counter() - started:.0f} s for the simulations ({args.seeds} seeds x {len(arms)} arms)")


if __name__ == "__main__":
    main()
