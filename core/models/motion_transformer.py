"""Transformer encoder for next-frame body keypoints and emotion, with an MDN head.

Input at frame t: the flattened keypoints and the emotion vector of frames
<= t (causal mask). Output at frame t: a Gaussian mixture over the keypoints
of frame t+1 and a regression of its emotion vector.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from core.models.mdn import MDNHead, MixtureParams


@dataclass
class MotionTransformerConfig:
    keypoint_dim: int = 34   # 17 joints x 2
    emotion_dim: int = 4
    max_length: int = 128
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.1
    n_components: int = 5


class MotionTransformer(nn.Module):
    def __init__(self, config: MotionTransformerConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Linear(c.keypoint_dim + c.emotion_dim, c.d_model)
        self.position = nn.Embedding(c.max_length, c.d_model)
        layer = nn.TransformerEncoderLayer(
            c.d_model, c.n_heads, c.dim_feedforward, c.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model)
        self.mdn = MDNHead(c.d_model, c.keypoint_dim, c.n_components)
        self.emotion_head = nn.Linear(c.d_model, c.emotion_dim)

    def forward(self, keypoints: torch.Tensor, emotion: torch.Tensor, padding_mask: torch.Tensor | None = None) -> tuple[MixtureParams, torch.Tensor]:
        """keypoints (B, T, Dk), emotion (B, T, De), padding_mask (B, T) True at padding.
        Returns the mixture over frame t+1 keypoints (B, T, K, Dk) and emotion (B, T, De)."""
        B, T, _ = keypoints.shape
        x = self.embed(torch.cat([keypoints, emotion], dim=-1))              # (B, T, d)
        x = x + self.position(torch.arange(T, device=x.device))[None]        # (B, T, d)
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=x.device, dtype=x.dtype)
        if padding_mask is not None:  # a float mask, so it matches the causal mask's type
            padding_mask = torch.zeros_like(padding_mask, dtype=x.dtype).masked_fill(padding_mask, float("-inf"))
        h = self.norm(self.encoder(x, mask=causal, src_key_padding_mask=padding_mask, is_causal=True))  # (B, T, d)
        return self.mdn(h), self.emotion_head(h)

    def constructor_args(self) -> dict:
        """Enough to rebuild the model from a checkpoint alone."""
        return asdict(self.config)
