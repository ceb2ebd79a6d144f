"""The ``mdn_motion`` family: next-frame keypoints + emotion with an MDN head.

loss = MSE(keypoints) + MSE(emotion) + w(t) * MDN NLL, where the keypoint MSE
is taken on the mixture's expected value and w(t) is the loss-weight ramp of
:func:`core.schedules.ramp_weight` over the fraction of the budget trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from core.config import (
    AT_LEAST_ONE,
    DROPOUT,
    NON_NEGATIVE,
    OPEN_FRACTION,
    POSITIVE,
    PROBABILITY,
    Bound,
    ConfigError,
    check_bounds,
)
from core.data.motion import NUM_EMOTIONS, NUM_JOINTS, SCHEMA, check_motion_arrays, generate_motion
from core.experiments.base import EVAL_SEED_STRIDE, TorchExperiment, epoch_seed, random_split, seed_epoch, shared_tensor, shuffled
from core.experiments.registry import DataDef, FamilyDef
from core.metrics import masked_mean, mean_jerk, sample_diversity
from core.models.mdn import SAMPLING_MODES, MixtureParams, mdn_nll, sample_mdn
from core.models.motion_transformer import MotionTransformer, MotionTransformerConfig
from core.schedules import RAMP_SHAPES, cosine_factor, ramp_weight


@dataclass
class MdnMotionConfig:
    # data (synthetic generator; ignored by a user's --data file except the split)
    num_sequences: int = 384
    min_length: int = 32
    max_length: int = 64
    data_seed: int = 0
    val_fraction: float = 0.2
    # model
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.1
    n_components: int = 5
    # optimisation
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    grad_clip: float = 1.0
    seed: int = 0
    max_epochs: int = 20
    # MDN loss-weight schedule (fractions of max_epochs)
    ramp_shape: str = "linear"
    initial_weight: float = 0.1
    ramp_start: float = 0.0
    ramp_length: float = 0.5
    # generation
    sampling: str = "next_most_probable"
    sigma_start: float = 100.0
    sigma_end: float = 1.0
    gen_context: int = 16
    gen_steps: int = 24
    gen_samples: int = 3
    gen_contexts: int = 8

    # Every numeric field's range, checked when a config is built (core.config.check_bounds).
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "num_sequences": Bound(2), "min_length": Bound(3), "max_length": Bound(3), "data_seed": NON_NEGATIVE,
        "val_fraction": OPEN_FRACTION, "d_model": AT_LEAST_ONE, "n_heads": AT_LEAST_ONE, "n_layers": AT_LEAST_ONE,
        "dim_feedforward": AT_LEAST_ONE, "dropout": DROPOUT, "n_components": AT_LEAST_ONE, "lr": POSITIVE,
        "weight_decay": NON_NEGATIVE, "batch_size": AT_LEAST_ONE, "grad_clip": NON_NEGATIVE, "seed": NON_NEGATIVE,
        "max_epochs": AT_LEAST_ONE, "initial_weight": NON_NEGATIVE, "ramp_start": PROBABILITY, "ramp_length": NON_NEGATIVE,
        "sigma_start": POSITIVE, "sigma_end": POSITIVE, "gen_context": AT_LEAST_ONE, "gen_steps": AT_LEAST_ONE,
        "gen_samples": AT_LEAST_ONE, "gen_contexts": AT_LEAST_ONE,
    }

    def __post_init__(self) -> None:
        check_bounds(self, self.BOUNDS)
        if self.ramp_shape not in RAMP_SHAPES:
            raise ConfigError(f"`ramp_shape` is {self.ramp_shape!r}, expected one of {list(RAMP_SHAPES)}")
        if self.sampling not in SAMPLING_MODES:
            raise ConfigError(f"`sampling` is {self.sampling!r}, expected one of {list(SAMPLING_MODES)}")
        if self.ramp_shape == "exponential" and self.initial_weight <= 0:
            raise ConfigError(f"`initial_weight` is {self.initial_weight}, an exponential ramp needs > 0")
        if self.min_length > self.max_length:
            raise ConfigError(f"`min_length` is {self.min_length}, expected 3 <= min_length <= max_length ({self.max_length})")
        if self.d_model % self.n_heads:
            raise ConfigError(f"`d_model` ({self.d_model}) must be divisible by `n_heads` ({self.n_heads})")


@torch.no_grad()
def continue_motion(model: MotionTransformer, keypoints: torch.Tensor, emotion: torch.Tensor, steps: int, *, mode: str,
                    divisor: Callable[[int], float], generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue (B, t, 34) keypoints / (B, t, 4) emotions by ``steps`` frames with
    ``model``, feeding each prediction back: the next keypoints drawn by
    :func:`sample_mdn` in ``mode`` with the sigma divided by ``divisor(step)``, the
    next emotion the model's prediction clipped to [0, 1]. Returns (B, steps, 34)."""
    model.eval()
    kp, emo = keypoints, emotion
    for step in range(steps):
        mixture, emo_pred = model(kp, emo)
        last = MixtureParams(mixture.logits[:, -1].float(), mixture.mu[:, -1].float(), mixture.log_sigma[:, -1].float())
        kp_next = sample_mdn(last, mode, sigma_divisor=divisor(step), generator=generator)   # (B, 34), float32
        kp = torch.cat([kp, kp_next[:, None].to(kp.dtype)], dim=1)
        emo = torch.cat([emo, emo_pred[:, -1:].clamp(0.0, 1.0).to(emo.dtype)], dim=1)
    return kp[:, keypoints.shape[1] :]                                          # (B, steps, 34)


class MdnMotionExperiment(TorchExperiment):
    def __init__(self, config: MdnMotionConfig, arrays: dict[str, np.ndarray], device: torch.device | str = "cpu"):
        super().__init__(config, device)
        c = config
        n, T = arrays["keypoints"].shape[:2]
        if c.gen_context + c.gen_steps > T:
            raise ConfigError(f"`gen_context` + `gen_steps` = {c.gen_context + c.gen_steps} exceeds the data's {T} frames")
        self.keypoints = shared_tensor(arrays["keypoints"].reshape(n, T, NUM_JOINTS * 2), self.device)
        self.emotion = shared_tensor(arrays["emotion"], self.device)
        self.lengths = shared_tensor(arrays["lengths"], self.device, torch.long)
        self.train_idx, self.val_idx = random_split(n, c.val_fraction, c.data_seed, device=self.device)
        self.model = MotionTransformer(MotionTransformerConfig(
            keypoint_dim=NUM_JOINTS * 2, emotion_dim=NUM_EMOTIONS, max_length=T, d_model=c.d_model,
            n_heads=c.n_heads, n_layers=c.n_layers, dim_feedforward=c.dim_feedforward,
            dropout=c.dropout, n_components=c.n_components,
        )).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)

    def mdn_weight(self, epoch: int) -> float:
        c = self.config
        return ramp_weight(epoch / c.max_epochs, shape=c.ramp_shape, initial_weight=c.initial_weight,
                           ramp_start=c.ramp_start, ramp_length=c.ramp_length)

    def _loss_terms(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        lengths = self.lengths[idx]
        L = int(lengths.max())
        kp, emo = self.keypoints[idx, :L], self.emotion[idx, :L]                    # (B, L, 34), (B, L, 4)
        valid = torch.arange(L - 1, device=self.device)[None] < (lengths - 1)[:, None]  # (B, L-1)
        mixture, emo_pred = self.model(kp[:, :-1], emo[:, :-1])                     # predicts frame t+1
        # bfloat16 under resources.precision bf16: the MDN likelihood in float32
        mixture = type(mixture)(mixture.logits.float(), mixture.mu.float(), mixture.log_sigma.float())
        emo_pred = emo_pred.float()                                                 # losses in float32
        terms = {
            "kp_mse": masked_mean((mixture.mean() - kp[:, 1:]).pow(2), valid),
            "emotion_mse": masked_mean((emo_pred - emo[:, 1:]).pow(2), valid),
            "nll": masked_mean(mdn_nll(mixture, kp[:, 1:]), valid),
        }
        return terms, valid.sum()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        c = self.config
        self.model.train()
        weight = self.mdn_weight(epoch)
        order = shuffled(self.train_idx, seed_epoch(c.seed, epoch))
        total, batches = 0.0, 0
        for start in range(0, len(order), c.batch_size):
            terms, _ = self._loss_terms(order[start : start + c.batch_size])
            loss = terms["kp_mse"] + terms["emotion_mse"] + weight * terms["nll"]
            self.step(loss)
            total += float(loss.detach())
            batches += 1
        return {"train_loss": total / max(batches, 1), "mdn_weight": weight}

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float]:
        c = self.config
        self.model.eval()
        sums = {"kp_mse": 0.0, "emotion_mse": 0.0, "nll": 0.0}
        frames = 0
        for start in range(0, len(self.val_idx), c.batch_size):
            terms, count = self._loss_terms(self.val_idx[start : start + c.batch_size])
            for k in sums:
                sums[k] += float(terms[k]) * int(count)
            frames += int(count)
        out = {f"val_{k}": v / frames for k, v in sums.items()}
        out["val_mse"] = out["val_kp_mse"] + out["val_emotion_mse"]
        out.update(self.generation_metrics(epoch))
        return out

    @torch.no_grad()
    def generate(self, keypoints: torch.Tensor, emotion: torch.Tensor, steps: int, *, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue (B, t, 34) keypoints / (B, t, 4) emotions by ``steps`` frames,
        feeding each prediction back; sigma divisor on the cosine curve."""
        c = self.config
        return continue_motion(self.model, keypoints, emotion, steps, mode=mode, generator=generator,
                               divisor=lambda step: cosine_factor(step, steps, start=c.sigma_start, end=c.sigma_end))

    def generation_metrics(self, epoch: int) -> dict[str, float]:
        """Jerk (smoothness) and sample diversity of generated continuations, with
        the jerk of the real continuations for scale."""
        c = self.config
        long_enough = self.val_idx[self.lengths[self.val_idx] >= c.gen_context + c.gen_steps][: c.gen_contexts]
        if len(long_enough) == 0:
            return {}
        ctx_kp = self.keypoints[long_enough, : c.gen_context]
        ctx_emo = self.emotion[long_enough, : c.gen_context]
        S, B = c.gen_samples, len(long_enough)
        gen = torch.Generator(device=self.device).manual_seed(epoch_seed(c.seed, epoch, stride=EVAL_SEED_STRIDE))
        out = self.generate(ctx_kp.repeat(S, 1, 1), ctx_emo.repeat(S, 1, 1), c.gen_steps, mode=c.sampling, generator=gen)
        samples = out.reshape(S, B, c.gen_steps, NUM_JOINTS, 2)
        real = self.keypoints[long_enough, c.gen_context : c.gen_context + c.gen_steps].reshape(B, c.gen_steps, NUM_JOINTS, 2)
        jerk = mean_jerk(samples.flatten(0, 1))
        return {"gen_jerk": jerk, "gen_jerk_ratio": jerk / max(mean_jerk(real), 1e-12),
                "gen_diversity": sample_diversity(samples)}


def reported_metrics(config: MdnMotionConfig) -> list[str]:
    """What a trial reports (``FamilyDef.metrics``): ``train_epoch``'s loss and MDN
    weight, ``evaluate``'s validation losses, and its generation figures (reported
    only where a validation sequence has ``gen_context`` + ``gen_steps`` frames)."""
    return ["epoch", "train_loss", "mdn_weight", "val_kp_mse", "val_emotion_mse", "val_nll", "val_mse",
            "gen_jerk", "gen_jerk_ratio", "gen_diversity"]


FAMILY = FamilyDef(
    name="mdn_motion",
    config_cls=MdnMotionConfig,
    experiment_cls=MdnMotionExperiment,
    data=DataDef(schema=SCHEMA, check=check_motion_arrays, generate=generate_motion, cache_name="motion",
                 params={"num_sequences": "num_sequences", "min_length": "min_length",
                         "max_length": "max_length", "seed": "data_seed"}),
    study="mdn_ramp",
    tiny={"num_sequences": 16, "min_length": 16, "max_length": 24, "d_model": 16, "n_heads": 2, "dim_feedforward": 16,
          "n_layers": 1, "gen_contexts": 2, "gen_steps": 4, "gen_context": 8, "gen_samples": 2, "max_epochs": 2,
          "batch_size": 8},
    metrics=reported_metrics,
)
