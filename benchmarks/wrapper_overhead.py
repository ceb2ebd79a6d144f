"""Wrapper overhead: each family inside its Ray Tune trainable against a plain
loop over the same model and data.

    python benchmarks/wrapper_overhead.py [--epochs 5] [--reps 2] [--families ...] [--smoke]

Two comparisons, both on one thread per trial:

1. Every family, at its study's default size: seconds per epoch inside the
   trainable (a one-trial Tune run through ``studies.tune.tuner.make_trainable``:
   Ray actor, data from the object store, a report and a checkpoint every
   epoch; and again with only a report per epoch, no checkpoint) against the
   family's own ``train_epoch`` + ``evaluate`` called from a
   plain ``for`` loop in this process. Steady state: the first epoch (which
   builds the model and pays one-off imports) is left out of both, and shown
   separately as the trial's start-up. The two sides alternate ``--reps``
   times; medians are printed.
2. ``mdn_motion`` only: the family's epoch code against a hand-written PyTorch
   loop (same batches, same loss), interleaved epoch by epoch, showing that the
   family code itself adds nothing but its extra science (generated-motion
   metrics).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_CACHE, load_study, machine  # noqa: E402

from core.experiments.registry import family_names, get_family  # noqa: E402  (_common put the repo on the path)


def plain_loop(spec, data, epochs: int) -> list[float]:  # noqa: ANN001
    """Seconds of each epoch of the family's own code in a plain loop."""
    import torch

    from trainables._loop import PLATFORM_KEYS

    torch.set_num_threads(1)
    started = time.perf_counter()
    experiment = spec.family_info.build(_config(spec, epochs), data, "cpu", ignore=PLATFORM_KEYS)
    times = []
    for epoch in range(epochs):
        experiment.train_epoch(epoch)
        experiment.evaluate(epoch)
        times.append(time.perf_counter() - started)
        started = time.perf_counter()
    return times


def in_trainable(spec, data, epochs: int, storage: Path, checkpoint_every: int = 1) -> list[float]:  # noqa: ANN001
    """Seconds of each epoch inside the trainable, as Tune measured them."""
    from ray import tune

    from studies.tune.tuner import make_trainable

    config = {**_config(spec, epochs), "checkpoint_every": checkpoint_every}
    tuner = tune.Tuner(make_trainable(spec, data), param_space=config,
                       tune_config=tune.TuneConfig(num_samples=1, reuse_actors=False),
                       run_config=tune.RunConfig(storage_path=str(storage), verbose=0,
                                                 checkpoint_config=tune.CheckpointConfig(num_to_keep=None)))
    grid = tuner.fit()
    history = grid[0].metrics_dataframe
    return [float(x) for x in history["time_this_iter_s"]]


def _config(spec, epochs: int) -> dict:  # noqa: ANN001
    return {**spec.trial_config(), "max_epochs": epochs, "checkpoint_every": 1, "cpus_per_trial": 1}


def compare_families(families: list[str], epochs: int, reps: int, smoke: bool, cache_dir: Path) -> None:
    import torch._dynamo  # noqa: F401  (a fresh process pays this ~2-4 s import at its first optimizer; the plain side pays it here, once)

    from studies.tune.ray_session import ray_session

    rows = []
    with ray_session(None, num_cpus=1), tempfile.TemporaryDirectory() as tmp:
        for family in families:
            spec, data = load_study(get_family(family).study, smoke=smoke, overrides=[], cache_dir=cache_dir)
            plain, tuned, lean = [], [], []
            for _ in range(reps):
                plain.append(plain_loop(spec, data, epochs))
                tuned.append(in_trainable(spec, data, epochs, Path(tmp)))
                lean.append(in_trainable(spec, data, epochs, Path(tmp), checkpoint_every=epochs))
            p = median(t for run in plain for t in run[1:])
            q = median(t for run in tuned for t in run[1:])
            r = median(t for run in lean for t in run[1:-1]) if epochs > 2 else q  # the last epoch checkpoints
            start_p = median(run[0] - p for run in plain)
            start_q = median(run[0] - q for run in tuned)
            rows.append((family, get_family(family).study, p, q, r, start_p, start_q))
            print(f"{family}: plain {p:.3f} s/epoch, in trainable {q:.3f} s/epoch ({r:.3f} without checkpoints)", flush=True)
    print(f"\n{'smoke' if smoke else 'default'} study sizes, {epochs} epochs x {reps} runs per side, one thread\n")
    print("| family (study) | plain loop s/epoch | in trainable, checkpoint every epoch | ratio "
          "| in trainable, report only | ratio | epochs/s plain / trainable | first-epoch extra, plain / trainable s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for family, study, p, q, r, sp, sq in rows:
        print(f"| {family} ({study}) | {p:.3f} | {q:.3f} | {q / p:.2f} | {r:.3f} | {r / p:.2f} | {1 / p:.2f} / {1 / q:.2f} "
              f"| {sp:.2f} / {sq:.2f} |")


def bare_epoch(exp, epoch: int) -> None:  # noqa: ANN001
    """mdn_motion's epoch written as a plain PyTorch loop (train and validation losses)."""
    import torch

    c = exp.config
    exp.model.train()
    w = exp.mdn_weight(epoch)
    order = exp.train_idx[torch.randperm(len(exp.train_idx), generator=torch.Generator().manual_seed(epoch))]
    for s in range(0, len(order), c.batch_size):
        terms, _ = exp._loss_terms(order[s : s + c.batch_size])
        loss = terms["kp_mse"] + terms["emotion_mse"] + w * terms["nll"]
        exp.optimizer.zero_grad()
        loss.backward()
        exp.optimizer.step()
    exp.model.eval()
    with torch.no_grad():
        for s in range(0, len(exp.val_idx), c.batch_size):
            exp._loss_terms(exp.val_idx[s : s + c.batch_size])


def compare_bare_mdn(epochs: int) -> None:
    import torch

    from core.data.motion import generate_motion
    from core.experiments.mdn_motion import MdnMotionConfig, MdnMotionExperiment
    from core.training import run_epochs

    torch.set_num_threads(1)
    data = generate_motion(num_sequences=256)
    cfg = dict(num_sequences=256, d_model=48, dim_feedforward=96, n_components=4, max_epochs=epochs)
    bare, family = MdnMotionExperiment(MdnMotionConfig(**cfg), data), MdnMotionExperiment(MdnMotionConfig(**cfg), data)
    t_bare = t_fam = t_gen = 0.0
    for epoch in range(epochs):
        t = time.perf_counter()
        bare_epoch(bare, epoch)
        t_bare += time.perf_counter() - t
        t = time.perf_counter()
        run_epochs(family, max_epochs=epoch + 1, start_epoch=epoch,
                   on_epoch=lambda e, m: {"experiment": family.state_dict(), "epoch": e} and None)
        t_fam += time.perf_counter() - t
        t = time.perf_counter()
        family.generation_metrics(epoch)
        t_gen += time.perf_counter() - t
    print(f"\nmdn_motion, hand-written PyTorch loop vs the family's code in core.training.run_epochs ({epochs} epochs):")
    print(f"  hand-written loop:   {t_bare / epochs:.3f} s/epoch")
    print(f"  family code:         {t_fam / epochs:.3f} s/epoch (of which generated-motion metrics {t_gen / epochs:.3f})")
    print(f"  ratio:               {t_fam / t_bare:.3f}; without the generated-motion metrics {(t_fam - t_gen) / t_bare:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--families", nargs="+", default=family_names(), choices=family_names())
    ap.add_argument("--smoke", action="store_true", help="the studies' smoke sizes (quick; overhead looks larger)")
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    args = ap.parse_args()
    print(machine())
    compare_families(args.families, args.epochs, args.reps, args.smoke, Path(args.cache_dir))
    compare_bare_mdn(args.epochs)


if __name__ == "__main__":
    main()
