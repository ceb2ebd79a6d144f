"""DeepPrior-style hand pose regressor: a CNN predicts the coefficients of a pose PCA.

Oberweger, Wohlhart & Lepetit 2015 ("Hands Deep in Deep Learning for Hand
Pose Estimation") put a linear "prior" bottleneck at the end of the network.
The CNN regresses ``pca_dim`` coefficients, and a fixed linear layer, the PCA
of the training poses, maps them back to the full 3J-dimensional pose. The
network can then only output poses near the span of plausible ones.

Optional FiLM conditioning on the action label (Perez et al. 2018, "FiLM:
Visual Reasoning with a General Conditioning Layer") can sit after the
BatchNorm of any subset of the conv blocks: ``h <- (1 + gamma(a)) * h + beta(a)``,
where ``gamma, beta`` are linear in a learnt embedding of the label ``a``. A
BatchNorm that FiLM follows has ``affine=False``, because FiLM's own scale and
shift take the place of BatchNorm's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

NUM_BLOCKS = 3
FILM_PLACEMENTS = ("none", "0", "1", "2", "0,1", "0,2", "1,2", "0,1,2")


def parse_film_blocks(text: str, num_blocks: int = NUM_BLOCKS) -> tuple[int, ...]:
    """``"none"`` -> (); ``"0,2"`` -> (0, 2). Raises ValueError on anything else."""
    if text == "none":
        return ()
    try:
        blocks = tuple(sorted({int(b) for b in text.split(",")}))
    except ValueError:
        raise ValueError(f"The value of `film_blocks` is {text!r}, but must be 'none' or block indices like '0,2'") from None
    if not blocks or blocks[0] < 0 or blocks[-1] >= num_blocks:
        raise ValueError(f"The value of `film_blocks` is {text!r}, but the blocks must lie in [0, {num_blocks})")
    return blocks


def fit_pca(poses: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and the first ``dim`` principal directions (dim, D) of poses (M, D).

    The directions are the right singular vectors of the centred data matrix,
    with the largest singular values first. They are orthonormal, and the sign
    of each is fixed (largest entry positive) so that refits agree.
    """
    if not 1 <= dim <= min(poses.shape):
        raise ValueError(f"The value of `dim` is {dim}, but must be 1 <= dim <= min(samples, features) = {min(poses.shape)}")
    mean = poses.mean(0)
    _, _, vh = torch.linalg.svd(poses - mean, full_matrices=False)
    comps = vh[:dim]                                                         # (dim, D)
    sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    return mean, comps * sign


def pca_encode(poses: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """Poses (..., D) -> coefficients (..., dim)."""
    return (poses - mean) @ components.T


def pca_decode(coeffs: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """Coefficients (..., dim) -> poses (..., D)."""
    return coeffs @ components + mean


class FiLM(nn.Module):
    """Feature-wise affine modulation ``(1 + gamma) * h + beta`` from a conditioning vector."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(cond).chunk(2, dim=-1)                       # (B, C) each
        return (1.0 + gamma)[:, :, None, None] * h + beta[:, :, None, None]


class ConvBlock(nn.Module):
    """conv 3x3 -> BatchNorm (affine only without FiLM) -> [FiLM] -> ReLU -> max-pool 2."""

    def __init__(self, c_in: int, c_out: int, film_dim: int | None):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=film_dim is None)
        self.film = FiLM(film_dim, c_out) if film_dim is not None else None
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = self.bn(self.conv(x))
        if self.film is not None:
            h = self.film(h, cond)
        return self.pool(torch.relu(h))


@dataclass(frozen=True)
class DeepPriorConfig:
    input_size: int = 32
    channels: int = 8
    hidden: int = 256
    dropout: float = 0.2
    pca_dim: int = 24
    num_joints: int = 21
    num_actions: int = 6
    film_blocks: str = "none"
    film_dim: int = 8


class DeepPrior(nn.Module):
    """Depth crop (B, 1, S, S) [+ action label (B,)] -> normalised pose (B, J, 3)."""

    # Registered buffers (see __init__), declared so that they type as tensors.
    pca_mean: torch.Tensor
    pca_components: torch.Tensor

    def __init__(self, config: DeepPriorConfig):
        super().__init__()
        self.config = config
        input_size, channels, hidden, dropout = config.input_size, config.channels, config.hidden, config.dropout
        pca_dim, num_joints, num_actions, film_dim = config.pca_dim, config.num_joints, config.num_actions, config.film_dim
        if input_size % 2**NUM_BLOCKS:
            raise ValueError(f"The value of `input_size` is {input_size}, but must be divisible by {2**NUM_BLOCKS}")
        self.film_blocks = parse_film_blocks(config.film_blocks)
        self.num_joints = num_joints
        self.embedding = nn.Embedding(num_actions, film_dim) if self.film_blocks else None
        blocks, c_in = [], 1
        for i in range(NUM_BLOCKS):
            c_out = channels * 2**i
            blocks.append(ConvBlock(c_in, c_out, film_dim if i in self.film_blocks else None))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        side = input_size // 2**NUM_BLOCKS
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.coeffs = nn.Linear(hidden, pca_dim)
        # The prior: fixed (not trained) PCA of the training poses, saved with the weights.
        self.register_buffer("pca_mean", torch.zeros(num_joints * 3))
        self.register_buffer("pca_components", torch.eye(pca_dim, num_joints * 3))

    def constructor_args(self) -> dict[str, Any]:
        return asdict(self.config)

    def set_pca(self, mean: torch.Tensor, components: torch.Tensor) -> None:
        self.pca_mean.copy_(mean)
        self.pca_components.copy_(components)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None, *, return_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        cond = self.embedding(label) if self.embedding is not None else None     # (B, film_dim)
        features = []
        h = x
        for block in self.blocks:
            h = block(h, cond)                                                   # (B, C_i, S / 2^(i+1), ...)
            features.append(h)
        coeffs = self.coeffs(self.fc(h))                                         # (B, pca_dim)
        pose = pca_decode(coeffs, self.pca_mean, self.pca_components).view(-1, self.num_joints, 3)
        return (pose, features) if return_features else pose
