"""Conditional VAE for pose-conditioned next-frame prediction.

The structure of the CVAE video-prediction recipe (Sohn et al. 2015's
conditional VAE applied per frame, as in SVG, Denton & Fergus 2018, with a
fixed N(0, I) prior): to predict frame t,

- a **frame encoder** turns the previous frame x_{t-1} into a feature map;
- a **label (pose) encoder** turns the pose map p_t of frame t into one;
- a **Gaussian predictor** (the posterior q(z_t | x_t, p_t)) reads the
  *target* frame's features with the pose features and gives mu and logvar of
  a spatial latent z_t; training draws z_t = mu + sigma * eps
  (reparameterisation, Kingma & Welling 2014), inference z_t ~ N(0, I);
- a **decoder fusion** network combines previous-frame features, pose
  features and z_t, upsamples, fuses the previous frame's pixels once more at
  full resolution, and outputs a change in logit space,
  x_t = sigmoid(logit(x_{t-1}) + delta). Most of a frame is the previous
  frame, so the decoder starts as "copy the previous frame" (delta = 0) and
  learns what the pose and the latent change. (Tried on this data: a
  masked-compositing output, x_t = m x_{t-1} + (1 - m) c as in Finn et al.
  2016, learned slower; a plain sigmoid output learned nothing in 100 steps.)

Generating a clip feeds each predicted frame back as the next previous frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class CvaeConfig:
    channels: int = 3        # frame channels (1 or 3)
    pose_channels: int = 1   # pose-map channels
    width: int = 16          # feature channels at 1/4 resolution (half that at 1/2)
    z_channels: int = 4      # latent channels at 1/4 resolution


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.2))


class FrameEncoder(nn.Module):
    """(B, C, H, W) image -> features at 1/2 resolution (B, width/2, H/2, W/2),
    kept for the decoder's skip connection, and at 1/4 (B, width, H/4, W/4)."""

    def __init__(self, cin: int, width: int):
        super().__init__()
        self.down1 = _block(cin, width // 2, 2)
        self.down2 = _block(width // 2, width, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.down1(x)
        return half, self.down2(half)


class GaussianPredictor(nn.Module):
    """Frame + pose features -> (mu, logvar), each (B, z_channels, H/4, W/4)."""

    def __init__(self, cin: int, width: int, z_channels: int):
        super().__init__()
        self.net = nn.Sequential(_block(cin, width), nn.Conv2d(width, 2 * z_channels, 3, padding=1))

    def forward(self, frame_feat: torch.Tensor, pose_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(torch.cat([frame_feat, pose_feat], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)


class DecoderFusion(nn.Module):
    """Previous-frame features, pose features and z at 1/4 resolution, fused
    again with both at 1/2 and full resolution (U-Net skips: the pose map says
    where to draw at pixel level) -> the next frame (B, C, H, W) in [0, 1]."""

    def __init__(self, channels: int, pose_channels: int, width: int, z_channels: int):
        super().__init__()
        w2 = width // 2
        self.fuse = _block(2 * width + z_channels, width)
        self.up1 = _block(width + 2 * w2, w2)
        self.up2 = _block(w2 + channels + pose_channels, w2)
        self.out = nn.Conv2d(w2, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)   # start as "copy the previous frame" (see forward)
        assert self.out.bias is not None   # nn.Conv2d's default bias=True
        nn.init.zeros_(self.out.bias)

    def forward(self, prev: torch.Tensor, prev_feat: tuple[torch.Tensor, torch.Tensor], pose: torch.Tensor,
                pose_feat: tuple[torch.Tensor, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        up = lambda x: nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")   # noqa: E731
        h = self.fuse(torch.cat([prev_feat[1], pose_feat[1], z], dim=1))               # (B, w, H/4, W/4)
        h = self.up1(torch.cat([up(h), prev_feat[0], pose_feat[0]], dim=1))            # (B, w/2, H/2, W/2)
        h = self.up2(torch.cat([up(h), prev.to(h.dtype), pose.to(h.dtype)], dim=1))    # (B, w/2, H, W)
        # A residual in logit space: a zero output copies the previous frame.
        base = torch.logit(prev.float().clamp(1e-3, 1.0 - 1e-3)).to(h.dtype)
        return torch.sigmoid(base + self.out(h))                                       # (B, C, H, W)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I): a draw from N(mu, sigma^2)
    that gradients flow through to mu and logvar (Kingma & Welling 2014)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per sample, summed over every axis
    but the first: 0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2). Shape (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(dim=1)


PoseFeatures = tuple[torch.Tensor, torch.Tensor, torch.Tensor]   # pose map, 1/2 and 1/4 features


def map_pose_features(fn: Callable[[torch.Tensor], torch.Tensor], feats: PoseFeatures) -> PoseFeatures:
    """``fn`` applied to each of the three tensors, in order (the result is still a triple)."""
    return fn(feats[0]), fn(feats[1]), fn(feats[2])


class CvaeVideo(nn.Module):
    def __init__(self, config: CvaeConfig):
        super().__init__()
        if config.width < 2 or config.width % 2:
            raise ValueError(f"The value of `width` is {config.width}, but must be an even number >= 2")
        self.config = c = config
        self.frame_encoder = FrameEncoder(c.channels, c.width)
        self.pose_encoder = FrameEncoder(c.pose_channels, c.width)
        self.posterior = GaussianPredictor(2 * c.width, c.width, c.z_channels)
        self.decoder = DecoderFusion(c.channels, c.pose_channels, c.width, c.z_channels)

    def constructor_args(self) -> dict[str, Any]:
        return asdict(self.config)

    def latent_shape(self, frame: torch.Tensor) -> tuple[int, ...]:
        """(B, z_channels, H/4, W/4) for (B, C, H, W) frames."""
        B, _, H, W = frame.shape
        return (B, self.config.z_channels, H // 4, W // 4)

    def encode_pose(self, pose: torch.Tensor) -> PoseFeatures:
        """(B, P, H, W) pose maps -> the maps and their 1/2 and 1/4 features."""
        return (pose, *self.pose_encoder(pose))

    def posterior_params(self, target: torch.Tensor, pose: torch.Tensor) -> tuple[PoseFeatures, torch.Tensor, torch.Tensor]:
        """Pose features and q(z | x_t, p_t) for (B, C, H, W) targets and (B, P, H, W)
        poses; mu and logvar are (B, z_channels, H/4, W/4)."""
        pose_feat = self.encode_pose(pose)
        mu, logvar = self.posterior(self.frame_encoder(target)[1], pose_feat[2])
        return pose_feat, mu, logvar

    def decode(self, prev: torch.Tensor, pose_feat: PoseFeatures, z: torch.Tensor) -> torch.Tensor:
        """Next frame (B, C, H, W) from the previous frame, pose features and z."""
        return self.decoder(prev, self.frame_encoder(prev), pose_feat[0], pose_feat[1:], z)

    def forward_clip(
        self,
        frames: torch.Tensor,
        pose_maps: torch.Tensor,
        teacher: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass over (B, T, C, H, W) clips with (B, T, P, H, W) pose maps.

        ``teacher`` (B,) bool: clips that are fed the ground-truth previous frame
        at every step (teacher forcing); the others are fed their own previous
        prediction, starting from the true first frame (gradients flow through
        the fed-back predictions). Returns the predicted frames 1..T-1
        (B, T-1, C, H, W) and mu, logvar (B, T-1, z_channels, H/4, W/4).
        Teacher-forced clips need no recurrence, so they go through in one
        batched call; the free-running ones step through time.
        """
        B, T = frames.shape[:2]
        pose_feat, mu, logvar = self.posterior_params(frames[:, 1:].flatten(0, 1), pose_maps[:, 1:].flatten(0, 1))
        z = reparameterize(mu, logvar, generator=generator)                    # (B*(T-1), z, h, w)
        per_clip = lambda x: x.unflatten(0, (B, T - 1))                        # noqa: E731  (B*(T-1), ...) -> (B, T-1, ...)
        pose_feat = map_pose_features(per_clip, pose_feat)
        mu, logvar, z = per_clip(mu), per_clip(logvar), per_clip(z)
        pred = frames.new_zeros((B, T - 1, *frames.shape[2:]))
        tf_idx, fr_idx = teacher.nonzero().flatten(), (~teacher).nonzero().flatten()
        if len(tf_idx):
            feat = map_pose_features(lambda f: f[tf_idx].flatten(0, 1), pose_feat)
            out = self.decode(frames[tf_idx, :-1].flatten(0, 1), feat, z[tf_idx].flatten(0, 1))
            pred = pred.index_copy(0, tf_idx, out.unflatten(0, (len(tf_idx), T - 1)).to(pred.dtype))
        if len(fr_idx):
            prev, steps = frames[fr_idx, 0], []
            feats = map_pose_features(lambda f: f[fr_idx], pose_feat)
            for t in range(T - 1):
                prev = self.decode(prev, (feats[0][:, t], feats[1][:, t], feats[2][:, t]), z[fr_idx, t])
                steps.append(prev)
            pred = pred.index_copy(0, fr_idx, torch.stack(steps, dim=1).to(pred.dtype))
        return pred, mu, logvar

    @torch.no_grad()
    def generate(self, first: torch.Tensor, pose_maps: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Clip (B, T, C, H, W) from its first frame (B, C, H, W) and all T pose maps
        (B, T, P, H, W): z ~ N(0, I) per frame, each prediction fed back as the
        next previous frame; frame 0 is ``first`` itself."""
        frames, prev = [first], first
        for t in range(1, pose_maps.shape[1]):
            z = torch.randn(self.latent_shape(first), generator=generator, device=first.device, dtype=first.dtype)
            prev = self.decode(prev, self.encode_pose(pose_maps[:, t]), z).to(first.dtype)
            frames.append(prev)
        return torch.stack(frames, dim=1)
