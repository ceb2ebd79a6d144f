"""LSTM action classifier over variable-length joint sequences.

Padded batches go through :func:`torch.nn.utils.rnn.pack_padded_sequence`, so
the LSTM never reads padding, and each sequence's output is what it would be
alone. The sequence is pooled into one vector in one of two ways:

- ``last``: the last layer's hidden state after the last valid frame (``h_n``);
- ``attention``: additive attention (Bahdanau et al. 2015; the pooling form
  of Yang et al. 2016, "Hierarchical Attention Networks"). It computes
  ``score_t = v^T tanh(W h_t + b)``, takes a softmax over the valid frames only
  (padding gets weight exactly 0), and returns ``sum_t a_t h_t``.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

POOLINGS = ("last", "attention")


def masked_softmax(scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Softmax of (B, T) scores over the first ``lengths[b]`` steps of each row; 0 elsewhere."""
    T = scores.shape[1]
    valid = torch.arange(T, device=scores.device)[None, :] < lengths.to(scores.device)[:, None]   # (B, T)
    weights = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=1)
    return weights.masked_fill(~valid, 0.0)


@dataclass(frozen=True)
class HarLSTMConfig:
    input_dim: int
    num_classes: int
    hidden_size: int = 32
    num_layers: int = 1
    pooling: str = "last"
    attention_dim: int = 32
    dropout: float = 0.1


class HarLSTM(nn.Module):
    """Features (B, T, F) + lengths (B,) -> class logits (B, C)."""

    def __init__(self, config: HarLSTMConfig):
        super().__init__()
        self.config = config
        input_dim, hidden_size, num_layers, dropout = config.input_dim, config.hidden_size, config.num_layers, config.dropout
        pooling, attention_dim, num_classes = config.pooling, config.attention_dim, config.num_classes
        if pooling not in POOLINGS:
            raise ValueError(f"The value of `pooling` is {pooling!r}, but must be one of {POOLINGS}")
        self.pooling = pooling
        self.lstm = nn.LSTM(input_dim, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        if pooling == "attention":
            self.attn = nn.Sequential(nn.Linear(hidden_size, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1, bias=False))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, num_classes))

    def constructor_args(self) -> dict[str, Any]:
        return asdict(self.config)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Pooled vector (B, H), attention weights (B, T) or None, and the
        per-step outputs (B, T, H), which are zero after each length."""
        T = x.shape[1]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        # oneDNN has no bfloat16 LSTM over packed sequences on the CPU ("could not create a
        # primitive descriptor"): there the LSTM runs in float32 under bf16 autocast; CUDA's takes bf16.
        cpu_autocast = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        with torch.autocast("cpu", enabled=False) if cpu_autocast else nullcontext():
            out, (h_n, _) = self.lstm(packed)
        steps, _ = pad_packed_sequence(out, batch_first=True, total_length=T)     # (B, T, H)
        if self.pooling == "last":
            return h_n[-1], None, steps                                            # h_n is in input order
        weights = masked_softmax(self.attn(steps).squeeze(-1), lengths)             # (B, T)
        return (weights[..., None] * steps).sum(1), weights, steps

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pooled, _, _ = self.encode(x, lengths)
        return self.head(pooled)
