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

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.config import ConfigError, config_from_dict
from core.data.hand import NUM_JOINTS, SEQUENCE_SCHEMA, check_sequence_arrays, generate_hand_actions, num_classes
from core.data.hdf5 import cached_hdf5, load_hdf5
from core.models.deep_prior import fit_pca, pca_encode
from core.models.har_lstm import POOLINGS, HarLSTM

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

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"`pooling` is {self.pooling!r}, expected one of {list(POOLINGS)}")
        if not 0 <= self.pca_dim <= NUM_JOINTS * 3:
            raise ConfigError(f"`pca_dim` is {self.pca_dim}, expected 0 (no PCA) <= pca_dim <= {NUM_JOINTS * 3}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"`val_fraction` is {self.val_fraction}, expected 0 < val_fraction < 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"`dropout` is {self.dropout}, expected 0 <= dropout < 1")
        if not 2 <= self.min_length <= self.max_length:
            raise ConfigError(f"`min_length` is {self.min_length}, expected 2 <= min_length <= max_length ({self.max_length})")
        for name in ("max_epochs", "batch_size", "num_sequences", "hidden_size", "num_layers", "attention_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` is {getattr(self, name)}, expected >= 1")
        for name in ("joint_noise_mm", "lr", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"`{name}` is {getattr(self, name)}, expected >= 0")


# The config fields load_data builds the data set from. The data is built once,
# before the trials, so a search over one of them would be silently ignored:
# studies/spec.py refuses it.
DATA_FIELDS = frozenset({"data_seed", "joint_noise_mm", "max_length", "min_length", "num_sequences"})


def load_data(config: HandActionConfig, *, data_path: str | None, cache_dir: str | Path) -> dict[str, np.ndarray]:
    """A user's HDF5 file, or the synthetic joint sequences from (and into) the cache."""
    if data_path is None:
        params: dict[str, Any] = dict(num_sequences=config.num_sequences, min_length=config.min_length, max_length=config.max_length,
                                      joint_noise_mm=config.joint_noise_mm, seed=config.data_seed)
        data_path = str(cached_hdf5(cache_dir, "hand_actions", params, lambda: generate_hand_actions(**params), SEQUENCE_SCHEMA))
    arrays = load_hdf5(data_path, SEQUENCE_SCHEMA)
    check_sequence_arrays(arrays, data_path)
    return arrays


def joint_features(joints: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(N, T, 21, 3) mm -> (N, T, 63): centred on each sequence's mean wrist
    over its valid frames, in units of 100 mm, zero after each length."""
    N, T = joints.shape[:2]
    valid = (torch.arange(T, device=joints.device)[None] < lengths[:, None]).to(joints.dtype)     # (N, T)
    wrist = (joints[:, :, 0] * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)           # (N, 3)
    feats = (joints - wrist[:, None, None, :]) / FEATURE_SCALE_MM
    return (feats * valid[..., None, None]).reshape(N, T, NUM_JOINTS * 3)


class HandActionExperiment:
    def __init__(self, config: HandActionConfig, arrays: dict[str, np.ndarray], device: torch.device | str = "cpu"):
        self.config = c = config
        self.device = dev = torch.device(device)
        torch.manual_seed(c.seed)
        with warnings.catch_warnings():  # read-only arrays from Ray's object store: shared, never written
            warnings.simplefilter("ignore", UserWarning)
            joints = torch.as_tensor(arrays["joints"], device=dev, dtype=torch.float32)
        self.lengths = torch.as_tensor(np.asarray(arrays["lengths"], dtype=np.int64), device=dev)
        self.labels = torch.as_tensor(np.asarray(arrays["label"], dtype=np.int64), device=dev)
        n = len(self.labels)
        order = np.random.default_rng(c.data_seed).permutation(n)
        n_val = min(n - 1, max(1, int(math.ceil(c.val_fraction * n))))
        self.val_idx = torch.as_tensor(np.sort(order[:n_val]), device=dev)
        self.train_idx = torch.as_tensor(np.sort(order[n_val:]), device=dev)

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
        self.model = HarLSTM(input_dim=self.features.shape[-1], num_classes=num_classes(np.asarray(arrays["label"])),
                             hidden_size=c.hidden_size, num_layers=c.num_layers, pooling=c.pooling,
                             attention_dim=c.attention_dim, dropout=c.dropout).to(dev)
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
        torch.manual_seed(c.seed * 100_003 + epoch)  # dropout: same epoch, same masks, even after a resume
        gen = torch.Generator().manual_seed(c.seed * 100_003 + epoch)
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=gen).to(self.device)]
        total, correct, seen = 0.0, 0, 0
        for start in range(0, len(order), c.batch_size):
            x, lengths, y = self._batch(order[start : start + c.batch_size])
            logits = self.model(x, lengths)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if c.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            self.optimizer.step()
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

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                                 "model_args": self.model.constructor_args(), "config": asdict(self.config)}
        if self.pca_mean is not None:
            assert self.pca_components is not None   # fitted and loaded together with pca_mean
            state["pca_mean"], state["pca_components"] = self.pca_mean.cpu().clone(), self.pca_components.cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "pca_mean" in state:  # the fit is deterministic; the checkpoint's copy is authoritative
            self.pca_mean = state["pca_mean"].to(self.device)
            self.pca_components = state["pca_components"].to(self.device)
            self.features = self._features()


def build(config: dict[str, Any], arrays: dict[str, np.ndarray], device: torch.device | str = "cpu", *, ignore: frozenset[str] = frozenset()) -> HandActionExperiment:
    return HandActionExperiment(config_from_dict(HandActionConfig, config, ignore=ignore), arrays, device)
