"""The ``au2blend`` family: 17 facial action units -> 61 blendshape weights per frame.

loss = MSE over real frames + ``negrelu_weight`` * NegReLU penalty, where the
NegReLU penalty is the mean of relu(-y_hat) over real frames
(:func:`core.models.grunet.negrelu_penalty`). Padding frames never count in
the metrics (``val_mse`` and the pooled ``val_r2`` of
:class:`core.sequence.MaskedRegressionStats`), nor, unless ``mask_loss`` is
switched off, in the loss.

Variants, each one config field (the ``grunet_arch`` study ablates all but
``mask_loss``):

- ``packed``: every batch is gathered and sorted longest first by
  :func:`core.sequence.collate_sorted` either way (the same batches, from the
  same seeded shuffle); ``True`` runs the GRU(s) on
  ``pack_padded_sequence(..., enforce_sorted=True)``, ``False`` runs the padded
  batch as is (its final state then includes the padding frames, which only
  the seq2seq decoder reads);
- ``seq2seq`` / ``attention``: step-wise decoding with teacher forcing in
  training and free-running decoding in evaluation, optionally with Bahdanau
  attention (:class:`core.models.grunet.GruSeq2Seq`); ``attention`` is
  ignored without ``seq2seq``;
- ``max_train_length``: training sequences longer than this are cut to a
  window of that many frames at a random start, new every epoch (seeded);
  0 trains on whole sequences. Validation always runs whole sequences;
- ``mask_loss``: ``False`` gives the unmasked loss of naive padded code (the
  padding frames count, with the file's padding values as targets); the
  metrics stay masked either way.

Inputs are standardised per AU with the mean and standard deviation over the
real frames of the training split (computed at build time from the data, so
a resumed trial computes the same numbers); padding frames are set to 0. Everything runs in float32 on the
device given to :func:`build`: GRUs this small gain nothing from bfloat16.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from core.config import AT_LEAST_ONE, DROPOUT, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, Bound, ConfigError, check_bounds
from core.data.au2blend import NUM_AUS, NUM_BLENDSHAPES, SCHEMA, check_au2blend_arrays, generate_au2blend
from core.experiments.base import TorchExperiment, epoch_generator, random_split, seed_epoch, shared_tensor, shuffled
from core.experiments.registry import DataDef, FamilyDef
from core.models.grunet import GruNetConfig, build_grunet, negrelu_penalty
from core.sequence import MaskedRegressionStats, SequenceBatch, collate_sorted, length_mask, masked_mse


@dataclass
class Au2BlendConfig:
    # data (synthetic generator; a user's --data file replaces it, the split still applies)
    num_sequences: int = 200
    min_length: int = 24
    max_length: int = 96
    delay: int = 2              # frames the blendshapes lag the AUs
    noise: float = 0.02         # std of the target noise (before clipping to [0, 1])
    data_seed: int = 0
    val_fraction: float = 0.2
    # model (core/models/grunet.py)
    hidden_size: int = 128      # the research notes' GRU
    num_layers: int = 1
    dropout: float = 0.0
    seq2seq: bool = False
    attention: bool = False     # Bahdanau attention in the seq2seq decoder; ignored without seq2seq
    attention_dim: int = 16
    # variants
    packed: bool = False        # pack_padded_sequence (True) or the padded batch as is (False)
    negrelu_weight: float = 0.0
    max_train_length: int = 0   # crop training sequences to windows of this many frames; 0 = whole
    mask_loss: bool = True      # exclude padding frames from the loss (the metrics always do)
    # optimisation
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    grad_clip: float = 1.0
    seed: int = 0
    max_epochs: int = 10

    # Every numeric field's range, checked when a config is built (core.config.check_bounds).
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "num_sequences": Bound(2), "min_length": Bound(2), "max_length": Bound(2), "delay": NON_NEGATIVE,
        "noise": NON_NEGATIVE, "data_seed": NON_NEGATIVE, "val_fraction": OPEN_FRACTION, "hidden_size": AT_LEAST_ONE,
        "num_layers": AT_LEAST_ONE, "dropout": DROPOUT, "attention_dim": AT_LEAST_ONE, "negrelu_weight": NON_NEGATIVE,
        "max_train_length": NON_NEGATIVE, "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "batch_size": AT_LEAST_ONE,
        "grad_clip": NON_NEGATIVE, "seed": NON_NEGATIVE, "max_epochs": AT_LEAST_ONE,
    }

    def __post_init__(self) -> None:
        check_bounds(self, self.BOUNDS)   # num_sequences >= 2: one for validation
        if self.min_length > self.max_length:
            raise ConfigError(f"`min_length` is {self.min_length}, expected 2 <= min_length <= max_length ({self.max_length})")
        if self.max_train_length == 1:
            raise ConfigError(f"`max_train_length` is {self.max_train_length}, expected 0 (whole sequences) or >= 2")


class Au2BlendExperiment(TorchExperiment):
    def __init__(self, config: Au2BlendConfig, arrays: dict[str, np.ndarray], device: torch.device | str = "cpu"):
        super().__init__(config, device)
        c = config
        au = shared_tensor(arrays["au"], self.device)                         # (N, T, 17)
        self.blendshapes = shared_tensor(arrays["blendshapes"], self.device)  # (N, T, 61)
        self.lengths = shared_tensor(arrays["lengths"], "cpu", torch.long)    # (N,), CPU: collate_sorted sorts on it
        self.train_idx, self.val_idx = random_split(au.shape[0], c.val_fraction, c.data_seed)   # CPU
        # standardise the AUs with training-split statistics over real frames (a new tensor: the shared one is untouched)
        real = length_mask(self.lengths[self.train_idx], au.shape[1]).to(self.device)      # (n_train, T)
        frames = au[self.train_idx.to(self.device)][real].double()                          # (F, 17)
        mean, std = frames.mean(0), frames.std(0).clamp_min(1e-6)
        all_real = length_mask(self.lengths, au.shape[1]).to(self.device)[..., None]        # (N, T, 1)
        self.au = torch.where(all_real, (au - mean.float()) / std.float(), 0.0)             # (N, T, 17), padding 0
        self.model = build_grunet(GruNetConfig(
            input_dim=NUM_AUS, output_dim=NUM_BLENDSHAPES, hidden_size=c.hidden_size, num_layers=c.num_layers,
            dropout=c.dropout, seq2seq=c.seq2seq, attention=c.attention and c.seq2seq, attention_dim=c.attention_dim,
        )).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)

    def _arrays(self) -> dict[str, torch.Tensor]:
        return {"au": self.au, "blendshapes": self.blendshapes}

    def train_batches(self, epoch: int) -> Iterator[SequenceBatch]:
        """The epoch's training batches: a seeded shuffle, then (with
        ``max_train_length``) a seeded random window in each long sequence."""
        c = self.config
        gen = epoch_generator(c.seed, epoch)
        order = shuffled(self.train_idx, gen)
        starts = None
        if c.max_train_length:
            room = (self.lengths[order] - c.max_train_length).clamp_min(0)                  # (n_train,)
            starts = (torch.rand(len(order), generator=gen, dtype=torch.float64) * (room + 1)).floor().long()
        for i in range(0, len(order), c.batch_size):
            idx = order[i : i + c.batch_size].to(self.device)
            yield collate_sorted(self._arrays(), self.lengths, idx,
                                 starts=None if starts is None else starts[i : i + c.batch_size],
                                 max_length=c.max_train_length or None)

    def _predict(self, batch: SequenceBatch, *, teacher_forcing: bool) -> torch.Tensor:
        x, y = batch.tensors["au"], batch.tensors["blendshapes"]                            # (B, L, 17), (B, L, 61)
        if self.config.seq2seq:
            return self.model(x, batch.lengths, packed=self.config.packed, targets=y if teacher_forcing else None)
        return self.model(x, batch.lengths, packed=self.config.packed)                     # (B, L, 61)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        c = self.config
        self.model.train()
        seed_epoch(c.seed, epoch)   # dropout masks; the batches draw from their own generator
        sums = {"loss": 0.0, "mse": 0.0, "negrelu": 0.0}
        batches = 0
        for batch in self.train_batches(epoch):
            pred = self._predict(batch, teacher_forcing=True)
            mask = batch.mask if c.mask_loss else torch.ones_like(batch.mask)           # (B, L)
            mse = masked_mse(pred, batch.tensors["blendshapes"], mask)
            neg = negrelu_penalty(pred, mask)
            loss = mse + c.negrelu_weight * neg
            self.step(loss)
            for k, v in (("loss", loss), ("mse", mse), ("negrelu", neg)):
                sums[k] += float(v.detach())
            batches += 1
        return {f"train_{k}": v / max(batches, 1) for k, v in sums.items()}

    @torch.no_grad()
    def predict(self, idx: torch.Tensor) -> tuple[torch.Tensor, SequenceBatch]:
        """Evaluation-mode predictions (free-running for seq2seq) of whole sequences ``idx``,
        in the batch's longest-first order: (B, L, 61) and the batch."""
        self.model.eval()
        batch = collate_sorted(self._arrays(), self.lengths, idx.to(self.device))
        return self._predict(batch, teacher_forcing=False), batch

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float]:
        """MSE, pooled R^2, NegReLU penalty and the fraction of negative outputs,
        all over the real frames of the validation sequences."""
        c = self.config
        stats = MaskedRegressionStats()
        neg_sum, neg_count, values = 0.0, 0, 0
        for i in range(0, len(self.val_idx), c.batch_size):
            pred, batch = self.predict(self.val_idx[i : i + c.batch_size])
            stats.update(pred, batch.tensors["blendshapes"], batch.mask)
            real = pred[batch.mask]                                                          # (F, 61)
            neg_sum += float(torch.relu(-real).double().sum())
            neg_count += int((real < 0).sum())
            values += real.numel()
        return {"val_mse": stats.mse(), "val_r2": stats.r2(), "val_negrelu": neg_sum / values,
                "val_neg_frac": neg_count / values}


def reported_metrics(config: Au2BlendConfig) -> list[str]:
    """What a trial reports (``FamilyDef.metrics``): ``train_epoch``'s loss terms and
    ``evaluate``'s validation figures."""
    return ["epoch", "train_loss", "train_mse", "train_negrelu", "val_mse", "val_r2", "val_negrelu", "val_neg_frac"]


FAMILY = FamilyDef(
    name="au2blend",
    config_cls=Au2BlendConfig,
    experiment_cls=Au2BlendExperiment,
    data=DataDef(schema=SCHEMA, check=check_au2blend_arrays, generate=generate_au2blend, cache_name="au2blend",
                 params={"num_sequences": "num_sequences", "min_length": "min_length", "max_length": "max_length",
                         "delay": "delay", "noise": "noise", "seed": "data_seed"}),
    study="grunet_arch",
    tiny={"num_sequences": 12, "min_length": 6, "max_length": 20, "hidden_size": 8, "attention_dim": 4,
          "batch_size": 4, "max_epochs": 2},
    metrics=reported_metrics,
)
