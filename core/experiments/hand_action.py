"""The ``hand_action`` family: action class from a hand-joint sequence (LSTM).

The input is the 21 joints per frame, in mm. They are centred on the
sequence's mean wrist position and divided by 100 mm, so the features are O(1).
With ``pca_dim > 0``, each frame's 63 numbers are projected onto the first
``pca_dim`` principal directions. These are fitted on the valid frames of the
training sequences and kept in the checkpoint. The LSTM reads the packed
sequences and pools them by the last hidden state or by attention
(:mod:`core.models.har_lstm`). The loss is cross-entropy. The metric is the
top-1 accuracy on validation sequences (``val_accuracy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from core.config import AT_LEAST_ONE, DROPOUT, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, Bound, ConfigError, check_bounds
from core.data.hand import NUM_JOINTS, SEQUENCE_SCHEMA, check_sequence_arrays, generate_hand_actions, num_classes
from core.experiments.base import TorchExperiment, random_split, seed_epoch, shared_tensor, shuffled
from core.experiments.registry import DataDef, FamilyDef
from core.models.deep_prior import fit_pca, pca_encode
from core.models.har_lstm import POOLINGS, HarLSTM, HarLSTMConfig

FEATURE_SCALE_MM = 100.0


@dataclass
class HandActionConfig:
    # data (synthetic generator; ignored by a user's --data file except the split)
    num_sequences: int = 240
    min_length: int = 24
    max_length: int = 48
    joint_noise_mm: float = 2.0
    data_seed: int = 0
    val_fraction: float = 0.25
    # features
    pca_dim: int = 0                 # 0: the 63 joint coordinates; k > 0: their first k PCA coefficients
    # model
    hidden_size: int = 32
    num_layers: int = 1
    pooling: str = "last"            # last | attention
    attention_dim: int = 32
    dropout: float = 0.1
    # optimisation
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    grad_clip: float = 1.0
    seed: int = 0
    max_epochs: int = 20

    # Every numeric field's range, checked when a config is built (core.config.check_bounds).
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "num_sequences": Bound(2), "min_length": Bound(2), "max_length": Bound(2), "joint_noise_mm": NON_NEGATIVE,
        "data_seed": NON_NEGATIVE, "val_fraction": OPEN_FRACTION, "pca_dim": Bound(0, NUM_JOINTS * 3),
        "hidden_size": AT_LEAST_ONE, "num_layers": AT_LEAST_ONE, "attention_dim": AT_LEAST_ONE, "dropout": DROPOUT,
        "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "batch_size": AT_LEAST_ONE, "grad_clip": NON_NEGATIVE,
        "seed": NON_NEGATIVE, "max_epochs": AT_LEAST_ONE,
    }

    def __post_init__(self) -> None:
        check_bounds(self, self.BOUNDS)   # pca_dim 0: no PCA, the 63 joint coordinates
        if self.pooling not in POOLINGS:
            raise ConfigError(f"`pooling` is {self.pooling!r}, expected one of {list(POOLINGS)}")
        if self.min_length > self.max_length:
            raise ConfigError(f"`min_length` is {self.min_length}, expected 2 <= min_length <= max_length ({self.max_length})")


def joint_features(joints: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(N, T, 21, 3) mm -> (N, T, 63): centred on each sequence's mean wrist
    over its valid frames, in units of 100 mm, zero after each length."""
    N, T = joints.shape[:2]
    valid = (torch.arange(T, device=joints.device)[None] < lengths[:, None]).to(joints.dtype)     # (N, T)
    wrist = (joints[:, :, 0] * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)           # (N, 3)
    feats = (joints - wrist[:, None, None, :]) / FEATURE_SCALE_MM
    return (feats * valid[..., None, None]).reshape(N, T, NUM_JOINTS * 3)


class HandActionExperiment(TorchExperiment):
    def __init__(self, config: HandActionConfig, arrays: dict[str, np.ndarray], device: torch.device | str = "cpu"):
        super().__init__(config, device)
        c, dev = config, self.device
        joints = shared_tensor(arrays["joints"], dev)
        self.lengths = shared_tensor(arrays["lengths"], dev, torch.long)
        self.labels = shared_tensor(arrays["label"], dev, torch.long)
        self.train_idx, self.val_idx = random_split(len(self.labels), c.val_fraction, c.data_seed, device=dev)

        self.raw_features = joint_features(joints, self.lengths)                   # (N, T, 63)
        T = self.raw_features.shape[1]
        self.valid = torch.arange(T, device=dev)[None] < self.lengths[:, None]       # (N, T)
        self.pca_mean: torch.Tensor | None = None
        self.pca_components: torch.Tensor | None = None
        if c.pca_dim > 0:
            frames = self.raw_features[self.train_idx][self.valid[self.train_idx]]   # (M, 63) valid training frames
            if c.pca_dim > min(frames.shape):
                raise ConfigError(f"`pca_dim` is {c.pca_dim}, but the training set has only {frames.shape[0]} frames")
            mean, comps = fit_pca(frames.double(), c.pca_dim)
            self.pca_mean, self.pca_components = mean.float(), comps.float()
        self.features = self._features()                                            # (N, T, F)
        self.model = HarLSTM(HarLSTMConfig(
            input_dim=self.features.shape[-1], num_classes=num_classes(np.asarray(arrays["label"])),
            hidden_size=c.hidden_size, num_layers=c.num_layers, pooling=c.pooling, attention_dim=c.attention_dim,
            dropout=c.dropout,
        )).to(dev)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)

    def _features(self) -> torch.Tensor:
        """Model inputs (N, T, F): the joint features or their PCA coefficients, 0 on padding."""
        if self.pca_mean is None:
            return self.raw_features
        assert self.pca_components is not None   # fitted and loaded together with pca_mean
        return pca_encode(self.raw_features, self.pca_mean, self.pca_components) * self.valid[..., None]

    def _batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = self.lengths[idx]
        L = int(lengths.max())
        return self.features[idx, :L], lengths, self.labels[idx]                     # (B, L, F), (B,), (B,)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        c = self.config
        self.model.train()
        order = shuffled(self.train_idx, seed_epoch(c.seed, epoch))
        total, correct, seen = 0.0, 0, 0
        for start in range(0, len(order), c.batch_size):
            x, lengths, y = self._batch(order[start : start + c.batch_size])
            logits = self.model(x, lengths)
            loss = F.cross_entropy(logits, y)
            self.step(loss)
            total += float(loss.detach()) * len(y)
            correct += int((logits.argmax(-1) == y).sum())
            seen += len(y)
        return {"train_loss": total / seen, "train_accuracy": correct / seen}

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float]:
        self.model.eval()
        total, correct, seen = 0.0, 0, 0
        for start in range(0, len(self.val_idx), 256):
            x, lengths, y = self._batch(self.val_idx[start : start + 256])
            logits = self.model(x, lengths)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
            seen += len(y)
        return {"val_accuracy": correct / seen, "val_loss": total / seen}

    def extra_state(self) -> dict[str, Any]:
        if self.pca_mean is None:
            return {}
        assert self.pca_components is not None   # fitted and loaded together with pca_mean
        return {"pca_mean": self.pca_mean.cpu().clone(), "pca_components": self.pca_components.cpu().clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "pca_mean" in state:  # the fit is deterministic; the checkpoint's copy is authoritative
            self.pca_mean = state["pca_mean"].to(self.device)
            self.pca_components = state["pca_components"].to(self.device)
            self.features = self._features()


def reported_metrics(config: HandActionConfig) -> list[str]:
    """What a trial reports (``FamilyDef.metrics``): loss and accuracy, on the
    training and the validation sequences."""
    return ["epoch", "train_loss", "train_accuracy", "val_accuracy", "val_loss"]


FAMILY = FamilyDef(
    name="hand_action",
    config_cls=HandActionConfig,
    experiment_cls=HandActionExperiment,
    data=DataDef(schema=SEQUENCE_SCHEMA, check=check_sequence_arrays, generate=generate_hand_actions,
                 cache_name="hand_actions",
                 params={"num_sequences": "num_sequences", "min_length": "min_length", "max_length": "max_length",
                         "joint_noise_mm": "joint_noise_mm", "seed": "data_seed"}),
    study="har_lstm",
    tiny={"num_sequences": 24, "min_length": 8, "max_length": 14, "hidden_size": 8, "attention_dim": 8,
          "batch_size": 8, "max_epochs": 2},
    metrics=reported_metrics,
)
