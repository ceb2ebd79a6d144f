"""Depth-frame pre-processing for hand pose regression: centre, crop, normalise, augment.

This is the pipeline of DeepPrior / DeepPrior++ (Oberweger et al. 2015,
"Hands Deep in Deep Learning for Hand Pose Estimation", and Oberweger & Lepetit
2017, "DeepPrior++"):

1. Centre of mass (COM) of the hand pixels, back-projected to 3D and refined
   within a cube around the previous estimate (:func:`center_of_mass`).
2. A crop around it. Method ``cube`` projects a metric cube of ``cube_size`` mm
   centred on the COM into the image. Method ``bbox`` takes the 2D bounding box
   of the hand pixels, pads it and makes it square. Both are resized to the
   network input with nearest-neighbour sampling, because interpolating
   between the hand and the background would invent depths that do not exist.
3. Depth normalised to [-1, 1] inside the cube: ``(d - z_com) / (cube_size / 2)``,
   clipped. The background and anything beyond the cube becomes +1, the far plane.
4. Joints in the same normalised frame. Their pixel coordinates are relative to
   the crop centre, in units of the crop's half width. Their depth is normalised
   like the image. :func:`denormalise_joints` inverts this exactly, back to
   camera mm.

A crop is one row of 6 numbers, ``(uc, vc, hw_u, hw_v, zc, hd)``: the centre in
pixels, the half width and half height in pixels, the centre depth and the
half depth in mm.

**Augmentation** (DeepPrior++ section 3.2) works in the normalised frame. It is
one row ``(angle, scale, tu, tv, td)`` per sample. A normalised point ``n`` maps
to ``n' = R(angle) n_uv / scale - t_uv`` and ``n'_d = n_d / scale - td``. This
is an in-plane rotation about the crop centre, a metric scale of the cube, and
a translation of the cube. The image is resampled through the inverse of the
same map, so the image and the joints always agree. Modes combine ``rot``,
``trans`` and ``scale`` with ``+`` (:data:`AUG_MODES`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CROP_METHODS = ("cube", "bbox")
AUG_MODES = ("none", "rot", "trans", "scale", "rot+trans", "rot+scale", "trans+scale", "rot+trans+scale")


def aug_parts(mode: str) -> frozenset[str]:
    """The transforms a mode names: ``"rot+scale"`` -> {"rot", "scale"}; ``"none"`` -> {}."""
    if mode not in AUG_MODES:
        raise ValueError(f"The value of `mode` is {mode!r}, but must be one of {AUG_MODES}")
    return frozenset() if mode == "none" else frozenset(mode.split("+"))


def _split_intrinsics(intrinsics: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(intrinsics[..., i] for i in range(4))


def project(xyz: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Camera mm (..., 3) -> (u, v, d): pixel coordinates and depth in mm."""
    fx, fy, cx, cy = _split_intrinsics(intrinsics)
    z = xyz[..., 2]
    return torch.stack([fx * xyz[..., 0] / z + cx, fy * xyz[..., 1] / z + cy, z], dim=-1)


def unproject(uvd: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """(u, v, d) (..., 3) -> camera mm; the exact inverse of :func:`project`."""
    fx, fy, cx, cy = _split_intrinsics(intrinsics)
    d = uvd[..., 2]
    return torch.stack([(uvd[..., 0] - cx) * d / fx, (uvd[..., 1] - cy) * d / fy, d], dim=-1)


def _pixel_grid(height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    v, u = torch.meshgrid(torch.arange(height, dtype=like.dtype, device=like.device),
                          torch.arange(width, dtype=like.dtype, device=like.device), indexing="ij")
    return u, v                                                              # (H, W) each


def center_of_mass(depth: torch.Tensor, intrinsics: torch.Tensor, *, refine_size: float = 250.0, iterations: int = 2) -> torch.Tensor:
    """3D centre of mass (B, 3) in mm of the hand pixels of depth maps (B, H, W).

    As in DeepPrior, the hand is taken to be the object nearest the camera.
    The first estimate averages the pixels whose depth lies within
    ``refine_size`` mm of the nearest reading. Each refinement keeps only the
    points inside a cube of ``refine_size`` mm around the previous estimate, so
    a forearm or background clutter pulls the centre less.
    """
    B, H, W = depth.shape
    u, v = _pixel_grid(H, W, depth)
    uvd = torch.stack([u.expand(B, H, W), v.expand(B, H, W), depth], dim=-1)    # (B, H, W, 3)
    xyz = unproject(uvd, intrinsics).reshape(B, H * W, 3)
    d = depth.reshape(B, H * W)
    valid = d > 0
    nearest = torch.where(valid, d, torch.full_like(d, float("inf"))).amin(1, keepdim=True)   # (B, 1)
    mask = valid & (d <= nearest + refine_size)
    com = torch.zeros(B, 3, dtype=depth.dtype, device=depth.device)
    for it in range(iterations + 1):
        if it > 0:
            inside = ((xyz - com[:, None]).abs() <= refine_size / 2).all(-1) & valid
            mask = torch.where(inside.any(1, keepdim=True), inside, mask)      # keep the old mask if the cube is empty
        w = mask.to(depth.dtype)
        com = (xyz * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)
    return com


def cube_crops(com: torch.Tensor, cube_size: float, intrinsics: torch.Tensor) -> torch.Tensor:
    """Crops (B, 6) of a metric cube of ``cube_size`` mm centred on ``com`` (B, 3).

    The cube's front face is projected at the COM depth, so the crop's half
    width in pixels is ``fx * (cube_size / 2) / z_com``.
    """
    fx, fy, _, _ = _split_intrinsics(intrinsics)
    uvd = project(com, intrinsics)
    hd = torch.full_like(com[:, 2], cube_size / 2.0)
    return torch.stack([uvd[:, 0], uvd[:, 1], fx * hd / com[:, 2], fy * hd / com[:, 2], com[:, 2], hd], dim=-1)


def bbox_crops(depth: torch.Tensor, com: torch.Tensor, cube_size: float, padding: float) -> torch.Tensor:
    """Crops (B, 6) from the 2D bounding box of the hand pixels, made square.

    The hand pixels are those with a reading within ``cube_size / 2`` mm of the
    COM depth. The box is padded by ``padding`` times its half side. Depth is
    still normalised by ``cube_size / 2`` around the COM depth.
    """
    B, H, W = depth.shape
    u, v = _pixel_grid(H, W, depth)
    hand = (depth > 0) & ((depth - com[:, 2, None, None]).abs() <= cube_size / 2)
    hand = torch.where(hand.flatten(1).any(1)[:, None, None], hand, depth > 0)
    big = torch.tensor(float(H + W), dtype=depth.dtype, device=depth.device)
    u_min = torch.where(hand, u, big).flatten(1).amin(1)
    u_max = torch.where(hand, u, -big).flatten(1).amax(1)
    v_min = torch.where(hand, v, big).flatten(1).amin(1)
    v_max = torch.where(hand, v, -big).flatten(1).amax(1)
    half = 0.5 * torch.maximum(u_max - u_min + 1, v_max - v_min + 1) * (1.0 + padding)   # pixels cover +-0.5
    hd = torch.full_like(half, cube_size / 2.0)
    return torch.stack([(u_min + u_max) / 2, (v_min + v_max) / 2, half, half, com[:, 2], hd], dim=-1)


def identity_augmentation(n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, 5) augmentation rows that change nothing: angle 0, scale 1, no shift."""
    aug = torch.zeros(n, 5, dtype=dtype, device=device)
    aug[:, 1] = 1.0
    return aug


def sample_augmentation(
    n: int,
    mode: str,
    generator: torch.Generator,
    *,
    rotation_deg: float = 30.0,
    translation: float = 0.1,
    scale_std: float = 0.1,
    fraction: float = 1.0,
) -> torch.Tensor:
    """Random augmentation rows (n, 5), drawn from ``generator`` (so seeded).

    Rotation is uniform in +-``rotation_deg``. Translation is Gaussian with
    standard deviation ``translation`` in normalised units (a fraction of the
    half cube) per axis. Scale is ``1 + N(0, scale_std)``, clipped to
    [0.7, 1.3]. A share ``1 - fraction`` of the rows stays unaugmented, so
    the original distribution is still seen.
    """
    parts = aug_parts(mode)
    aug = identity_augmentation(n)
    draws = torch.rand(n, 6, generator=generator)                            # all drawn: same stream for every mode
    normal = torch.randn(n, 4, generator=generator)
    apply = (draws[:, 0] < fraction).float()
    if "rot" in parts:
        aug[:, 0] = apply * math.radians(rotation_deg) * (2.0 * draws[:, 1] - 1.0)
    if "scale" in parts:
        aug[:, 1] = 1.0 + apply * (scale_std * normal[:, 0]).clamp(-0.3, 0.3)
    if "trans" in parts:
        aug[:, 2:5] = apply[:, None] * translation * normal[:, 1:4]
    return aug


def _rotate(xy: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate (B, ..., 2) by angles (B,) counter-clockwise in (u, v)."""
    shape = (-1,) + (1,) * (xy.dim() - 2)
    c, s = torch.cos(angle).view(shape), torch.sin(angle).view(shape)
    return torch.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], dim=-1)


def _apply_aug(n: torch.Tensor, aug: torch.Tensor) -> torch.Tensor:
    """n' = (R n_uv / s - t_uv, n_d / s - t_d) for (B, ..., 3) points."""
    shape = (-1,) + (1,) * (n.dim() - 2)
    s = aug[:, 1].view(shape)
    uv = _rotate(n[..., :2], aug[:, 0]) / s[..., None] - aug[:, 2:4].view(shape + (2,))
    d = n[..., 2] / s - aug[:, 4].view(shape)
    return torch.cat([uv, d[..., None]], dim=-1)


def _invert_aug(n: torch.Tensor, aug: torch.Tensor) -> torch.Tensor:
    """n = (s R^-1 (n'_uv + t_uv), s (n'_d + t_d)): the inverse of :func:`_apply_aug`."""
    shape = (-1,) + (1,) * (n.dim() - 2)
    s = aug[:, 1].view(shape)
    uv = _rotate((n[..., :2] + aug[:, 2:4].view(shape + (2,))) * s[..., None], -aug[:, 0])
    d = (n[..., 2] + aug[:, 4].view(shape)) * s
    return torch.cat([uv, d[..., None]], dim=-1)


def normalise_joints(joints: torch.Tensor, crops: torch.Tensor, intrinsics: torch.Tensor, aug: torch.Tensor | None = None) -> torch.Tensor:
    """Camera mm (B, J, 3) -> the crop's normalised frame (B, J, 3).

    ``n_u = (u - uc) / hw_u``, ``n_v = (v - vc) / hw_v`` and ``n_d = (d - zc) / hd``,
    then the augmentation if given.
    """
    uvd = project(joints, intrinsics)
    c = crops[:, None, :]
    n = torch.stack([(uvd[..., 0] - c[..., 0]) / c[..., 2], (uvd[..., 1] - c[..., 1]) / c[..., 3],
                     (uvd[..., 2] - c[..., 4]) / c[..., 5]], dim=-1)
    return n if aug is None else _apply_aug(n, aug)


def denormalise_joints(n: torch.Tensor, crops: torch.Tensor, intrinsics: torch.Tensor, aug: torch.Tensor | None = None) -> torch.Tensor:
    """The normalised frame (B, J, 3) -> camera mm: the exact inverse of :func:`normalise_joints`."""
    if aug is not None:
        n = _invert_aug(n, aug)
    c = crops[:, None, :]
    uvd = torch.stack([n[..., 0] * c[..., 2] + c[..., 0], n[..., 1] * c[..., 3] + c[..., 1],
                       n[..., 2] * c[..., 5] + c[..., 4]], dim=-1)
    return unproject(uvd, intrinsics)


def crop_depth(depth: torch.Tensor, crops: torch.Tensor, size: int, aug: torch.Tensor | None = None) -> torch.Tensor:
    """Crop, resize and normalise depth maps (B, H, W) -> (B, 1, size, size) in [-1, 1].

    Output pixel (i, j) sits at ``n' = ((2j + 1) / size - 1, (2i + 1) / size - 1)``
    in the normalised frame. It reads the source pixel nearest to the
    un-augmented point ``n``, at ``u = n_u hw_u + uc``. Its value is the
    normalised depth ``(d - zc) / hd``, augmented like a joint's ``n_d``. Pixels
    with no reading, and points beyond the cube, become +1.
    """
    B, H, W = depth.shape
    dtype, device = depth.dtype, depth.device
    if aug is None:
        aug = identity_augmentation(B, dtype=dtype, device=device)
    lin = (2.0 * torch.arange(size, dtype=dtype, device=device) + 1.0) / size - 1.0
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    out = torch.stack([xx, yy, torch.zeros_like(xx)], dim=-1).expand(B, size, size, 3)   # (B, S, S, 3)
    src = _invert_aug(out, aug)                                                         # (B, S, S, 3)
    c = crops[:, None, None, :]
    u = src[..., 0] * c[..., 2] + c[..., 0]
    v = src[..., 1] * c[..., 3] + c[..., 1]
    grid = torch.stack([(2.0 * u + 1.0) / W - 1.0, (2.0 * v + 1.0) / H - 1.0], dim=-1)  # align_corners=False
    sampled = F.grid_sample(depth[:, None], grid, mode="nearest", padding_mode="zeros", align_corners=False)
    d = sampled[:, 0]                                                                   # (B, S, S) mm
    nd = (d - crops[:, 4, None, None]) / crops[:, 5, None, None]
    nd = nd / aug[:, 1, None, None] - aug[:, 4, None, None]
    nd = torch.where(d > 0, nd, torch.ones_like(nd)).clamp(-1.0, 1.0)
    return nd[:, None]


def make_crops(depth: torch.Tensor, intrinsics: torch.Tensor, *, method: str, cube_size: float, padding: float = 0.15) -> torch.Tensor:
    """COM, then the crops (B, 6) of ``method`` (``cube`` or ``bbox``)."""
    if method not in CROP_METHODS:
        raise ValueError(f"The value of `method` is {method!r}, but must be one of {CROP_METHODS}")
    com = center_of_mass(depth, intrinsics, refine_size=cube_size)
    if method == "cube":
        return cube_crops(com, cube_size, intrinsics)
    return bbox_crops(depth, com, cube_size, padding)
