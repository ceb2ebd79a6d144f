"""Metrics shared by families."""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, T, ...) over positions where ``mask`` (B, T) is True."""
    while mask.dim() < values.dim():
        mask = mask.unsqueeze(-1)
    mask = mask.expand_as(values).to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def mean_jerk(sequences: torch.Tensor, fps: float = 1.0) -> float:
    """Mean magnitude of the third time-derivative of (B, T, J, 2) positions.

    Jerk is the usual smoothness figure for generated motion (lower is
    smoother); with ``fps`` it is in units per second cubed.
    """
    if sequences.shape[1] < 4:
        return float("nan")
    third = torch.diff(sequences, n=3, dim=1) * fps**3   # (B, T-3, J, 2)
    return float(third.norm(dim=-1).mean())


def sample_diversity(samples: torch.Tensor) -> float:
    """Mean pairwise distance between S continuations of the same context.

    ``samples`` is (S, B, T, J, 2): S samples for each of B contexts. The
    figure is the joint-wise Euclidean distance averaged over frames, joints,
    pairs and contexts; 0 means the generator is deterministic.
    """
    S = samples.shape[0]
    if S < 2:
        return 0.0
    total, pairs = 0.0, 0
    for i in range(S):
        for j in range(i + 1, S):
            total += float((samples[i] - samples[j]).norm(dim=-1).mean())
            pairs += 1
    return total / pairs
