"""The ``hand_pose`` family: 21 3D hand joints from one depth frame (DeepPrior-style).

Pipeline: COM -> crop (metric cube or padded 2D box) -> depth normalised to
[-1, 1] inside the cube (:mod:`core.data.hand_preprocess`) -> CNN -> PCA
coefficients -> pose in the normalised frame (:mod:`core.models.deep_prior`)
-> back to camera mm. The loss is the MSE of the normalised pose. The metric is
the mean 3D joint error in mm on validation sequences (``val_error_mm``).

The PCA prior is fitted once, on the training poses in the normalised frame.
When ``pca_aug`` is set, ``pca_aug_copies`` augmented copies of every training
pose are added first. DeepPrior++ fits its PCA on augmented poses, so that
rotated or shifted poses stay in the span. Training images are augmented with
``train_aug``. They are either drawn afresh every epoch (``aug_random``) or
drawn once from the seed and reused (a fixed, augmented training set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

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
from core.data.hand import BONES, NUM_JOINTS, SCHEMA, check_hand_arrays, generate_hand_depth, num_classes
from core.data.hand_preprocess import (
    AUG_MODES,
    CROP_METHODS,
    crop_depth,
    denormalise_joints,
    make_crops,
    normalise_joints,
    sample_augmentation,
)
from core.experiments.base import TorchExperiment, epoch_generator, seed_epoch, shared_tensor
from core.experiments.registry import DataDef, FamilyDef
from core.models.deep_prior import NUM_BLOCKS, DeepPrior, DeepPriorConfig, fit_pca, parse_film_blocks, pca_decode, pca_encode


@dataclass
class HandPoseConfig:
    # data (synthetic generator; ignored by a user's --data file except the split)
    num_sequences: int = 60
    frames_per_sequence: int = 10
    image_size: int = 64
    noise_mm: float = 1.0
    pixel_dropout: float = 0.01
    data_seed: int = 0
    val_fraction: float = 0.2
    # pre-processing
    crop_method: str = "cube"        # cube | bbox
    cube_size: float = 250.0         # mm: the crop cube (cube) and the depth range (both)
    bbox_padding: float = 0.15       # bbox: padding as a fraction of the half side
    input_size: int = 32
    # augmentation
    train_aug: str = "none"          # one of AUG_MODES, for the training images
    pca_aug: str = "none"            # one of AUG_MODES, for the poses the PCA is fitted on
    aug_random: bool = True          # new draws every epoch (True) or one fixed draw from the seed
    aug_fraction: float = 0.5        # share of the training frames augmented per draw
    aug_rotation_deg: float = 30.0
    aug_translation_mm: float = 10.0
    aug_scale: float = 0.1
    pca_aug_copies: int = 4
    # model
    pca_dim: int = 24
    channels: int = 8
    hidden: int = 256
    dropout: float = 0.2
    film_blocks: str = "none"        # "none" or block indices "0", "1,2", ... (FiLM on the action label)
    film_dim: int = 8
    # optimisation
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    grad_clip: float = 5.0
    seed: int = 0
    max_epochs: int = 15

    # Every numeric field's range, checked when a config is built (core.config.check_bounds).
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "num_sequences": Bound(2), "frames_per_sequence": AT_LEAST_ONE, "image_size": Bound(16),
        "noise_mm": NON_NEGATIVE, "pixel_dropout": DROPOUT, "data_seed": NON_NEGATIVE, "val_fraction": OPEN_FRACTION,
        "cube_size": POSITIVE, "bbox_padding": NON_NEGATIVE, "input_size": Bound(8), "aug_fraction": PROBABILITY,
        "aug_rotation_deg": NON_NEGATIVE, "aug_translation_mm": NON_NEGATIVE, "aug_scale": NON_NEGATIVE,
        "pca_aug_copies": AT_LEAST_ONE, "pca_dim": Bound(1, NUM_JOINTS * 3), "channels": AT_LEAST_ONE,
        "hidden": AT_LEAST_ONE, "dropout": DROPOUT, "film_dim": AT_LEAST_ONE, "lr": POSITIVE,
        "weight_decay": NON_NEGATIVE, "batch_size": AT_LEAST_ONE, "grad_clip": NON_NEGATIVE, "seed": NON_NEGATIVE,
        "max_epochs": AT_LEAST_ONE,
    }

    def __post_init__(self) -> None:
        check_bounds(self, self.BOUNDS)
        if self.crop_method not in CROP_METHODS:
            raise ConfigError(f"`crop_method` is {self.crop_method!r}, expected one of {list(CROP_METHODS)}")
        for name in ("train_aug", "pca_aug"):
            if getattr(self, name) not in AUG_MODES:
                raise ConfigError(f"`{name}` is {getattr(self, name)!r}, expected one of {list(AUG_MODES)}")
        try:
            parse_film_blocks(self.film_blocks)
        except ValueError:
            raise ConfigError(f"`film_blocks` is {self.film_blocks!r}, expected 'none' or comma-separated block "
                              f"indices in [0, {NUM_BLOCKS}) like '0,2'") from None
        if self.input_size % 2**NUM_BLOCKS:
            raise ConfigError(f"`input_size` is {self.input_size}, expected a multiple of {2**NUM_BLOCKS} >= 8")


def split_by_sequence(sequence: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (train, val), sorted, with whole sequences in validation.
    Neighbouring frames of one sequence are near duplicates, so a frame-level
    split would leak."""
    ids = np.unique(sequence)
    order = np.random.default_rng(seed).permutation(ids)
    n_val = min(len(ids) - 1, max(1, int(math.ceil(val_fraction * len(ids)))))
    val = np.isin(sequence, order[:n_val])
    return np.flatnonzero(~val), np.flatnonzero(val)


class HandPoseExperiment(TorchExperiment):
    def __init__(self, config: HandPoseConfig, arrays: dict[str, np.ndarray], device: torch.device | str = "cpu"):
        super().__init__(config, device)
        c, dev = config, self.device
        depth = shared_tensor(arrays["depth"], dev)
        joints = shared_tensor(arrays["joints"], dev)
        self.intrinsics = shared_tensor(arrays["intrinsics"], dev)
        self.labels = shared_tensor(arrays["label"], dev, torch.long)
        train_idx, val_idx = split_by_sequence(np.asarray(arrays["sequence"]), c.val_fraction, c.data_seed)
        self.train_idx = torch.as_tensor(train_idx, device=dev)
        self.val_idx = torch.as_tensor(val_idx, device=dev)
        self.depth, self.joints = depth, joints
        self.crops = make_crops(depth, self.intrinsics, method=c.crop_method, cube_size=c.cube_size, padding=c.bbox_padding)  # (N, 6)
        self.norm_joints = normalise_joints(joints, self.crops, self.intrinsics)                 # (N, 21, 3)
        self.val_images = crop_depth(depth[self.val_idx], self.crops[self.val_idx], c.input_size)  # (Nv, 1, S, S)
        self._fixed_train: tuple[torch.Tensor, torch.Tensor] | None = None
        if c.train_aug == "none" or not c.aug_random:
            gen = epoch_generator(c.seed, 99_991)   # a stream no epoch uses
            self._fixed_train = self._training_set(gen)

        pca_poses = self._pca_poses()
        mean, components = fit_pca(pca_poses.flatten(1).double(), c.pca_dim)
        self.model = DeepPrior(DeepPriorConfig(
            input_size=c.input_size, channels=c.channels, hidden=c.hidden, dropout=c.dropout, pca_dim=c.pca_dim,
            num_joints=NUM_JOINTS, num_actions=num_classes(np.asarray(arrays["label"])), film_blocks=c.film_blocks,
            film_dim=c.film_dim,
        )).to(dev)
        self.model.set_pca(mean.float(), components.float())
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)

    # ---- data -------------------------------------------------------------
    def _aug_kwargs(self) -> dict[str, float]:
        c = self.config
        return dict(rotation_deg=c.aug_rotation_deg, translation=c.aug_translation_mm / (c.cube_size / 2.0), scale_std=c.aug_scale)

    def _training_set(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Training crops (Nt, 1, S, S) and normalised joints (Nt, 21, 3), augmented by ``train_aug``."""
        c, idx = self.config, self.train_idx
        if c.train_aug == "none":
            aug = None
        else:
            aug = sample_augmentation(len(idx), c.train_aug, gen, fraction=c.aug_fraction, **self._aug_kwargs()).to(self.device)
        images = crop_depth(self.depth[idx], self.crops[idx], c.input_size, aug)
        targets = normalise_joints(self.joints[idx], self.crops[idx], self.intrinsics, aug)
        return images, targets

    def _pca_poses(self) -> torch.Tensor:
        """Training poses in the normalised frame (M, 21, 3) for the PCA, with
        ``pca_aug_copies`` fully augmented copies when ``pca_aug`` is set."""
        c, idx = self.config, self.train_idx
        poses = [self.norm_joints[idx]]
        if c.pca_aug != "none":
            gen = epoch_generator(c.seed, 77_777)   # a stream no epoch uses
            for _ in range(c.pca_aug_copies):
                aug = sample_augmentation(len(idx), c.pca_aug, gen, fraction=1.0, **self._aug_kwargs()).to(self.device)
                poses.append(normalise_joints(self.joints[idx], self.crops[idx], self.intrinsics, aug))
        return torch.cat(poses)

    # ---- training ---------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        c = self.config
        self.model.train()
        gen = seed_epoch(c.seed, epoch)
        images, targets = self._fixed_train if self._fixed_train is not None else self._training_set(gen)
        labels = self.labels[self.train_idx]
        order = torch.randperm(len(images), generator=gen).to(self.device)
        total, batches = 0.0, 0
        for start in range(0, len(order), c.batch_size):
            b = order[start : start + c.batch_size]
            if len(b) < 2:  # BatchNorm needs two samples
                continue
            pred = self.model(images[b], labels[b])
            loss = (pred.float() - targets[b]).pow(2).mean()
            self.step(loss)
            total += float(loss.detach())
            batches += 1
        return {"train_loss": total / max(batches, 1)}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Normalised poses (B, 21, 3) of crops (B, 1, S, S), in eval mode."""
        self.model.eval()
        out = []
        for start in range(0, len(images), 256):
            out.append(self.model(images[start : start + 256], labels[start : start + 256]).float())
        return torch.cat(out)

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float]:
        idx = self.val_idx
        pred = self.predict(self.val_images, self.labels[idx])                              # (Nv, 21, 3)
        crops, true_mm = self.crops[idx], self.joints[idx]
        pred_mm = denormalise_joints(pred, crops, self.intrinsics)
        err = (pred_mm - true_mm).norm(dim=-1)                                               # (Nv, 21)
        m = self.model
        floor = pca_decode(pca_encode(self.norm_joints[idx].flatten(1), m.pca_mean, m.pca_components),
                           m.pca_mean, m.pca_components).view_as(pred)
        floor_err = (denormalise_joints(floor, crops, self.intrinsics) - true_mm).norm(dim=-1)
        return {
            "val_error_mm": float(err.mean()),
            "val_loss": float((pred - self.norm_joints[idx]).pow(2).mean()),
            "val_max_error_mm": float(err.amax(1).mean()),
            "val_frames_within_40mm": float((err.amax(1) <= 40.0).float().mean()),
            "val_pca_floor_mm": float(floor_err.mean()),
        }

    def extra_state(self) -> dict[str, Any]:
        # the PCA also travels inside the model's weights (buffers); this copy lets a reader use it without the model
        return {"pca_mean": self.model.pca_mean.detach().cpu().clone(),
                "pca_components": self.model.pca_components.detach().cpu().clone()}


def save_prediction_grid(experiment: HandPoseExperiment, path: str | Path, n: int = 8, *, columns: int = 4) -> Path:
    """Save a PNG grid of ``n`` validation crops with the true (green) and
    predicted (red) skeletons drawn on them. The frames are spread evenly over
    the validation set, and each title gives that frame's mean joint error in mm.

    It draws with matplotlib's Agg canvas directly (no pyplot, so no global
    backend state and no display).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    exp = experiment
    S = exp.config.input_size
    pick = torch.linspace(0, len(exp.val_idx) - 1, min(n, len(exp.val_idx))).round().long().to(exp.device)
    idx = exp.val_idx[pick]
    images = exp.val_images[pick]
    pred = exp.predict(images, exp.labels[idx])
    true = exp.norm_joints[idx]
    err = (denormalise_joints(pred, exp.crops[idx], exp.intrinsics) - exp.joints[idx]).norm(dim=-1).mean(1)
    rows = int(math.ceil(len(idx) / columns))
    fig = Figure(figsize=(2.4 * columns, 2.6 * rows))
    FigureCanvasAgg(fig)
    for k in range(len(idx)):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.imshow(images[k, 0].cpu().numpy(), cmap="gray", vmin=-1, vmax=1)
        for joints, colour in ((true[k], "lime"), (pred[k], "red")):
            px = ((joints[:, :2] + 1.0) / 2.0 * S - 0.5).cpu().numpy()          # continuous pixel coordinates
            for a, b in BONES:
                ax.plot(px[[a, b], 0], px[[a, b], 1], "-", color=colour, lw=1.0)
            ax.plot(px[:, 0], px[:, 1], "o", color=colour, ms=1.5)
        ax.set_xlim(-0.5, S - 0.5)
        ax.set_ylim(S - 0.5, -0.5)
        ax.set_title(f"frame {int(idx[k])}: {float(err[k]):.1f} mm", fontsize=8)
        ax.axis("off")
    fig.suptitle("hand_pose: true (green) vs predicted (red) joints", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def reported_metrics(config: HandPoseConfig) -> list[str]:
    """What a trial reports (``FamilyDef.metrics``): ``train_epoch``'s loss and
    ``evaluate``'s validation errors."""
    return ["epoch", "train_loss", "val_error_mm", "val_loss", "val_max_error_mm", "val_frames_within_40mm",
            "val_pca_floor_mm"]


FAMILY = FamilyDef(
    name="hand_pose",
    config_cls=HandPoseConfig,
    experiment_cls=HandPoseExperiment,
    data=DataDef(schema=SCHEMA, check=check_hand_arrays, generate=generate_hand_depth, cache_name="hand_depth",
                 params={"num_sequences": "num_sequences", "frames_per_sequence": "frames_per_sequence",
                         "image_size": "image_size", "noise_mm": "noise_mm", "dropout": "pixel_dropout",
                         "seed": "data_seed"}),
    study="crop_size",
    tiny={"num_sequences": 8, "frames_per_sequence": 4, "channels": 4, "hidden": 16, "pca_dim": 8, "batch_size": 8,
          "max_epochs": 2, "val_fraction": 0.25},
    metrics=reported_metrics,
)
