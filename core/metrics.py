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


def psnr(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0, dims: int = 3, eps: float = 1e-10) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image, ``10 log10(R^2 / MSE)``.

    ``data_range`` R is the span of valid pixel values (1.0 for frames in
    [0, 1], 255 for 8-bit images). The MSE is taken over the last ``dims``
    axes (3: one figure per (C, H, W) image) and floored at ``eps`` so
    identical images give a finite 10 log10(R^2 / eps) (100 dB for R = 1)
    instead of inf. Returns the leading shape, e.g. (B, T) for (B, T, C, H, W).
    """
    err = (pred.float() - target.float()).pow(2)
    mse = err.mean(dim=tuple(range(err.dim() - dims, err.dim()))) if dims > 0 else err
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(eps))


def psnr_per_frame(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0, eps: float = 1e-10) -> torch.Tensor:
    """PSNR curve over the frames of (B, T, C, H, W) clips: each frame's PSNR
    (see :func:`psnr`) averaged over the B clips, shape (T,). Averaging dB per
    image, not pooling the MSE, is the usual video-prediction convention
    (e.g. Denton & Fergus 2018, SVG)."""
    return psnr(pred, target, data_range=data_range, dims=3, eps=eps).mean(dim=0)
