"""Wrapper overhead: the family's epoch inside the platform's loop vs a bare PyTorch loop.

    python benchmarks/wrapper_overhead.py [--epochs 6]

Both loops train the same mdn_motion model on the same data, one thread, in
this process, interleaved epoch by epoch so machine load hits both alike. The
"platform" side is core.training.run_epochs with a reporting callback that
builds a checkpoint state every epoch (what the trainable does, minus Ray's
RPC); the bare side is a hand-written loop over the same batches.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.data.motion import generate_motion  # noqa: E402
from core.experiments.mdn_motion import MdnMotionConfig, MdnMotionExperiment  # noqa: E402
from core.training import run_epochs  # noqa: E402


def bare_epoch(exp: MdnMotionExperiment, epoch: int) -> None:
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = generate_motion(num_sequences=256)
    cfg = dict(num_sequences=256, d_model=48, dim_feedforward=96, n_components=4, max_epochs=args.epochs)
    bare, platform = MdnMotionExperiment(MdnMotionConfig(**cfg), data), MdnMotionExperiment(MdnMotionConfig(**cfg), data)
    t_bare = t_plat = t_gen = 0.0
    for epoch in range(args.epochs):
        t = time.perf_counter()
        bare_epoch(bare, epoch)
        t_bare += time.perf_counter() - t
        t = time.perf_counter()
        run_epochs(platform, max_epochs=epoch + 1, start_epoch=epoch,
                   on_epoch=lambda e, m: {"experiment": platform.state_dict(), "epoch": e} and None)
        t_plat += time.perf_counter() - t
        t = time.perf_counter()
        platform.generation_metrics(epoch)
        t_gen += time.perf_counter() - t
    print(f"bare PyTorch loop:     {t_bare / args.epochs:.3f} s/epoch")
    print(f"platform loop:         {t_plat / args.epochs:.3f} s/epoch (includes generation metrics {t_gen / args.epochs:.3f} s/epoch)")
    print(f"ratio platform/bare:   {t_plat / t_bare:.3f}")
    print(f"ratio without the generation metrics (extra science, not overhead): {(t_plat - t_gen) / t_bare:.3f}")


if __name__ == "__main__":
    main()
