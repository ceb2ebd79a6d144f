"""Mixture density network head (Bishop 1994) with diagonal Gaussians.

The head maps a feature vector to K mixture weights, K means and K
per-dimension standard deviations; the loss is the negative log-likelihood
``-log sum_k pi_k N(y | mu_k, diag(sigma_k^2))`` computed with log-sum-exp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

SAMPLING_MODES = ("most_probable", "next_most_probable", "random")
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class MixtureParams:
    logits: torch.Tensor     # (..., K) unnormalised mixture weights
    mu: torch.Tensor         # (..., K, D)
    log_sigma: torch.Tensor  # (..., K, D)

    def mean(self) -> torch.Tensor:
        """Expected value of the mixture, (..., D)."""
        return (torch.softmax(self.logits, dim=-1).unsqueeze(-1) * self.mu).sum(dim=-2)


class MDNHead(nn.Module):
    def __init__(self, in_features: int, out_dim: int, n_components: int, *, min_log_sigma: float = -7.0, max_log_sigma: float = 2.0):
        super().__init__()
        self.out_dim, self.n_components = out_dim, n_components
        self.min_log_sigma, self.max_log_sigma = min_log_sigma, max_log_sigma
        self.proj = nn.Linear(in_features, n_components * (1 + 2 * out_dim))

    def forward(self, h: torch.Tensor) -> MixtureParams:
        K, D = self.n_components, self.out_dim
        out = self.proj(h)                                   # (..., K*(1+2D))
        logits = out[..., :K]                                # (..., K)
        mu = out[..., K : K + K * D].unflatten(-1, (K, D))   # (..., K, D)
        log_sigma = out[..., K + K * D :].unflatten(-1, (K, D)).clamp(self.min_log_sigma, self.max_log_sigma)
        return MixtureParams(logits, mu, log_sigma)


def mdn_nll(params: MixtureParams, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per sample, divided by D (a per-dimension figure
    whose scale does not change with the number of joints). Shape (...)."""
    y = target.unsqueeze(-2)                                                  # (..., 1, D)
    z = (y - params.mu) * torch.exp(-params.log_sigma)                        # (..., K, D)
    log_prob = (-0.5 * z.pow(2) - params.log_sigma - 0.5 * _LOG_2PI).sum(-1)  # (..., K)
    log_mix = torch.log_softmax(params.logits, dim=-1) + log_prob             # (..., K)
    return -torch.logsumexp(log_mix, dim=-1) / target.shape[-1]


def sample_mdn(params: MixtureParams, mode: str, *, sigma_divisor: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one value per row, (..., D).

    - ``most_probable``: the mean of the component with the largest weight
      (deterministic);
    - ``next_most_probable``: a draw from that most probable component with its
      sigma divided by ``sigma_divisor`` (the notes' sharpened sampling; with a
      cosine divisor 100 -> 1 it starts almost deterministic and widens);
    - ``random``: a component drawn from the mixture weights, then a draw from
      it with sigma divided by ``sigma_divisor`` (1 gives the model's own law).
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f"The value of `mode` is {mode!r}, but must be one of {SAMPLING_MODES}")
    if sigma_divisor <= 0:
        raise ValueError(f"The value of `sigma_divisor` is {sigma_divisor}, but must be `sigma_divisor > 0`")
    if mode == "random":
        flat = torch.softmax(params.logits, dim=-1).reshape(-1, params.logits.shape[-1])
        k = torch.multinomial(flat, 1, generator=generator).reshape(params.logits.shape[:-1])
    else:
        k = params.logits.argmax(dim=-1)                                                  # (...)
    index = k[..., None, None].expand(*k.shape, 1, params.mu.shape[-1])                   # (..., 1, D)
    mu = params.mu.gather(-2, index).squeeze(-2)                                          # (..., D)
    if mode == "most_probable":
        return mu
    sigma = params.log_sigma.gather(-2, index).squeeze(-2).exp() / sigma_divisor
    noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + sigma * noise
