"""The ``cvae_video`` family: pose-conditioned next-frame prediction with a CVAE.

Per training clip, every frame t >= 1 is predicted from the previous frame
(the true one under teacher forcing, else the model's own prediction), the
pose map of frame t and a latent z_t from the posterior q(z | x_t, p_t):

    loss = sum over frames t of [ MSE(x_hat_t, x_t) + beta * KL(q(z_t | x_t, p_t) || N(0, I)) ]

averaged over the clips of a batch. Both terms are per-element means: the
MSE over a frame's pixels, the KL (:func:`core.models.cvae.gaussian_kl`)
divided by the latent's size (C_z x H/4 x W/4), so beta weighs the same
whatever the frame or latent size. (Summing the KL over the latent, as some
CVAE recipes do, makes it thousands of times heavier than a pixel-mean MSE:
the posterior collapses within an epoch whatever the annealing, and the
question of the ``kl_cycle`` study disappears.) beta follows
:func:`core.schedules.kl_beta_epochs` (none / monotonic / cyclical, Fu et al.
2019), evaluated per batch on the fractional epoch as in the paper. Each clip
is teacher-forced or not as a whole, with probability
:func:`core.schedules.teacher_forcing_ratio` of the epoch. For the first
``fast_train_epochs`` epochs, training uses a random window of
``fast_train_frames`` frames of each clip ("fast train": cheaper epochs while
the model learns the easy part).

Validation generates every validation clip autoregressively from its first
frame with z ~ N(0, I) and reports the PSNR of each generated frame averaged
over clips (``val_psnr_frame_01`` .. ``val_psnr_frame_{T-1}``, frame k being
clip frame k) and their mean ``val_psnr``, the study metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from core.config import AT_LEAST_ONE, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, PROBABILITY, Bound, ConfigError, check_bounds
from core.data.video import SCHEMA, check_video_arrays, generate_video
from core.experiments.base import EVAL_SEED_STRIDE, TorchExperiment, epoch_seed, random_split, seed_epoch, shared_tensor, shuffled
from core.experiments.registry import DataDef, FamilyDef
from core.metrics import psnr_per_frame
from core.models.cvae import CvaeConfig, CvaeVideo, gaussian_kl
from core.schedules import KL_ANNEAL_KINDS, kl_beta_epochs, teacher_forcing_ratio


@dataclass
class CvaeVideoConfig:
    # data (synthetic generator; ignored by a user's --data file except the split)
    num_clips: int = 96
    clip_length: int = 8
    frame_size: int = 32
    channels: int = 3
    noise: float = 0.01
    motion_speed: float = 1.0
    data_seed: int = 0
    val_fraction: float = 0.2
    # model
    width: int = 16
    z_channels: int = 4
    # optimisation
    lr: float = 5e-3
    batch_size: int = 8
    grad_clip: float = 1.0
    seed: int = 0
    max_epochs: int = 15
    # KL annealing (core.schedules.kl_beta_epochs); the cycle is in epochs
    kl_anneal_type: str = "none"
    kl_anneal_cycle: float = 4.0
    kl_anneal_ratio: float = 0.5
    # teacher forcing (core.schedules.teacher_forcing_ratio), decided per clip
    tfr: float = 0.0
    tfr_sde: int = 0
    tfr_d_step: float = 0.0
    tfr_lower: float = 0.0
    # fast train: shorter clips for the first epochs (0: off)
    fast_train_epochs: int = 0
    fast_train_frames: int = 4
    # validation
    val_batch_size: int = 64

    # Every numeric field's range, checked when a config is built (core.config.check_bounds).
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "num_clips": Bound(2), "clip_length": Bound(2, 100), "frame_size": Bound(8), "channels": AT_LEAST_ONE,
        "noise": NON_NEGATIVE, "motion_speed": POSITIVE, "data_seed": NON_NEGATIVE, "val_fraction": OPEN_FRACTION,
        "width": Bound(2), "z_channels": AT_LEAST_ONE, "lr": POSITIVE, "batch_size": AT_LEAST_ONE,
        "grad_clip": NON_NEGATIVE, "seed": NON_NEGATIVE, "max_epochs": AT_LEAST_ONE, "kl_anneal_cycle": POSITIVE,
        "kl_anneal_ratio": Bound(0, 1, low_open=True), "tfr": PROBABILITY, "tfr_sde": NON_NEGATIVE,
        "tfr_d_step": NON_NEGATIVE, "tfr_lower": PROBABILITY, "fast_train_epochs": NON_NEGATIVE,
        "fast_train_frames": Bound(2), "val_batch_size": AT_LEAST_ONE,
    }

    def __post_init__(self) -> None:
        check_bounds(self, self.BOUNDS)   # clip_length <= 100: metric names have two digits
        if self.kl_anneal_type not in KL_ANNEAL_KINDS:
            raise ConfigError(f"`kl_anneal_type` is {self.kl_anneal_type!r}, expected one of {list(KL_ANNEAL_KINDS)}")
        if self.channels not in (1, 3):
            raise ConfigError(f"`channels` is {self.channels}, expected 1 or 3")
        if self.frame_size % 4:
            raise ConfigError(f"`frame_size` is {self.frame_size}, expected a multiple of 4, >= 8")
        if self.width % 2:
            raise ConfigError(f"`width` is {self.width}, expected an even number >= 2")


def psnr_metric_name(frame: int) -> str:
    """``val_psnr_frame_01`` for clip frame 1 (the first generated frame)."""
    return f"val_psnr_frame_{frame:02d}"


class CvaeVideoExperiment(TorchExperiment):
    def __init__(self, config: CvaeVideoConfig, arrays: dict[str, np.ndarray], device: torch.device | str = "cpu"):
        super().__init__(config, device)
        c = config
        n, T, C = arrays["frames"].shape[:3]
        if T > 100:
            raise ConfigError(f"the data's clips have {T} frames, expected <= 100 (metric names have two digits)")
        self.frames = shared_tensor(arrays["frames"], self.device)          # (N, T, C, H, W)
        self.pose_maps = shared_tensor(arrays["pose_maps"], self.device)    # (N, T, P, H, W)
        self.train_idx, self.val_idx = random_split(n, c.val_fraction, c.data_seed, device=self.device)
        self.model = CvaeVideo(CvaeConfig(channels=C, pose_channels=self.pose_maps.shape[2],
                                          width=c.width, z_channels=c.z_channels)).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr)

    def kl_beta(self, epoch: float) -> float:
        c = self.config
        return kl_beta_epochs(epoch, kind=c.kl_anneal_type, cycle_epochs=c.kl_anneal_cycle, ratio=c.kl_anneal_ratio)

    def teacher_forcing(self, epoch: int) -> float:
        c = self.config
        return teacher_forcing_ratio(epoch, c.tfr, c.tfr_sde, c.tfr_d_step, lower=c.tfr_lower)

    def train_frames(self, epoch: int) -> int:
        """Frames per training clip in ``epoch`` (shorter while fast-training)."""
        T = self.frames.shape[1]
        c = self.config
        return min(T, c.fast_train_frames) if epoch < c.fast_train_epochs else T

    def clip_loss(self, frames: torch.Tensor, pose_maps: torch.Tensor, teacher: torch.Tensor, beta: float) -> dict[str, torch.Tensor]:
        """Loss of (B, L, C, H, W) clips: per-frame MSE (pixel mean) and KL (mean
        over latent dimensions) summed over the L-1 predicted frames, averaged
        over clips; also the per-frame means of both terms."""
        pred, mu, logvar = self.model.forward_clip(frames, pose_maps, teacher)
        pred, mu, logvar = pred.float(), mu.float(), logvar.float()
        mse = (pred - frames[:, 1:]).pow(2).flatten(2).mean(dim=2)          # (B, L-1)
        kl = gaussian_kl(mu.flatten(0, 1), logvar.flatten(0, 1)).unflatten(0, mse.shape) / mu[0, 0].numel()  # (B, L-1)
        loss = (mse + beta * kl).sum(dim=1).mean()
        return {"loss": loss, "mse": mse.mean(), "kl": kl.mean()}

    def train_epoch(self, epoch: int) -> dict[str, float]:
        c = self.config
        self.model.train()
        gen = seed_epoch(c.seed, epoch)           # shuffling, teacher forcing, windows
        order = shuffled(self.train_idx, gen)
        tfr = self.teacher_forcing(epoch)
        L, T = self.train_frames(epoch), self.frames.shape[1]
        n_batches = math.ceil(len(order) / c.batch_size)
        sums = {"loss": 0.0, "mse": 0.0, "kl": 0.0, "beta": 0.0, "teacher": 0.0}
        for b in range(n_batches):
            idx = order[b * c.batch_size : (b + 1) * c.batch_size]
            teacher = (torch.rand(len(idx), generator=gen) < tfr).to(self.device)      # (B,) per clip
            start = torch.randint(0, T - L + 1, (len(idx),), generator=gen).to(self.device)
            window = start[:, None] + torch.arange(L, device=self.device)[None]         # (B, L)
            frames = self.frames[idx[:, None], window]                                   # (B, L, C, H, W)
            pose_maps = self.pose_maps[idx[:, None], window]                             # (B, L, P, H, W)
            beta = self.kl_beta(epoch + b / n_batches)
            terms = self.clip_loss(frames, pose_maps, teacher, beta)
            self.step(terms["loss"])
            for k in ("loss", "mse", "kl"):
                sums[k] += float(terms[k].detach())
            sums["beta"] += beta
            sums["teacher"] += float(teacher.float().mean())
        out = {f"train_{k}": sums[k] / n_batches for k in ("loss", "mse", "kl")}
        out.update({"kl_beta": sums["beta"] / n_batches, "tfr": tfr,
                    "teacher_forced_fraction": sums["teacher"] / n_batches, "train_frames": float(L)})
        return out

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float]:
        """PSNR of validation clips generated from their first frame (z ~ N(0, I)),
        per frame and on average, plus the posterior's KL on the true frames."""
        c = self.config
        self.model.eval()
        gen = torch.Generator(device=self.device).manual_seed(epoch_seed(c.seed, epoch, stride=EVAL_SEED_STRIDE))
        curve_sum: torch.Tensor | None = None
        kl_sum, n = 0.0, 0
        for start in range(0, len(self.val_idx), c.val_batch_size):
            idx = self.val_idx[start : start + c.val_batch_size]
            frames, pose_maps = self.frames[idx], self.pose_maps[idx]                   # (B, T, ...)
            generated = self.model.generate(frames[:, 0], pose_maps, generator=gen)      # (B, T, C, H, W)
            _, mu, logvar = self.model.posterior_params(frames[:, 1:].flatten(0, 1), pose_maps[:, 1:].flatten(0, 1))
            curve = psnr_per_frame(generated[:, 1:].float(), frames[:, 1:]) * len(idx)   # (T-1,) summed over clips
            curve_sum = curve if curve_sum is None else curve_sum + curve
            kl_sum += float(gaussian_kl(mu.float(), logvar.float()).sum()) / mu[0].numel()
            n += len(idx)
        assert curve_sum is not None   # the config check keeps at least one validation clip
        per_frame = (curve_sum / n).tolist()
        out = {psnr_metric_name(k + 1): float(v) for k, v in enumerate(per_frame)}
        out["val_psnr"] = float(np.mean(per_frame))
        out["val_kl"] = kl_sum / (n * len(per_frame))
        return out


def reported_metrics(config: CvaeVideoConfig) -> list[str]:
    """What a trial reports (``FamilyDef.metrics``): ``train_epoch``'s loss terms and
    schedules, ``evaluate``'s PSNR (mean, and one per generated frame 1 ..
    ``clip_length`` - 1) and KL. With a user's ``--data`` file the per-frame names
    follow its clips' length: set ``clip_length`` to it to report them."""
    return ["epoch", "train_loss", "train_mse", "train_kl", "kl_beta", "tfr", "teacher_forced_fraction",
            "train_frames", *(psnr_metric_name(k) for k in range(1, config.clip_length)), "val_psnr", "val_kl"]


FAMILY = FamilyDef(
    name="cvae_video",
    config_cls=CvaeVideoConfig,
    experiment_cls=CvaeVideoExperiment,
    data=DataDef(schema=SCHEMA, check=check_video_arrays, generate=generate_video, cache_name="video",
                 params={"num_clips": "num_clips", "clip_length": "clip_length", "frame_size": "frame_size",
                         "channels": "channels", "noise": "noise", "speed": "motion_speed", "seed": "data_seed"}),
    study="kl_cycle",
    tiny={"num_clips": 12, "clip_length": 5, "frame_size": 16, "width": 4, "z_channels": 2, "batch_size": 4,
          "max_epochs": 2, "val_fraction": 0.25, "val_batch_size": 2},
    metrics=reported_metrics,
)
