"""Pose-conditioned video clips (the ``cvae_video`` family).

No video set can be downloaded here, so this is a deterministic generator in
the shape of a pose-conditioned video-prediction set (frames plus a rendered
pose map per frame, as in dance/skeleton-to-video data). Each clip shows a
stick figure performing one of three actions (walking, waving, jumping jacks)
at its own tempo, position and drift. What a model must use to predict frame
t from frame t-1 and the pose of frame t:

- **the pose** (keypoints, also rendered as a one-channel pose map): the
  limbs move by several pixels between frames, so a model that ignores the
  pose and copies or blurs the previous frame loses the figure;
- **the previous frame**: every clip has its own background (colour
  gradient, stripes and static shapes) and figure colour, which the pose map
  does not carry, so a model that ignores the previous frame cannot draw them;
- **lighting**: a global gain flickering smoothly and a moving spotlight
  change every pixel a little from frame to frame. Only the previous frame
  says where the lighting is; its next step is the part of a frame that is
  hard to predict (what a CVAE latent can carry during training).

Sensor noise (``noise``, std in [0, 1] units) sets a PSNR ceiling of about
``-20 log10(noise)`` dB for any predictor (40 dB at the default 0.01).

HDF5 schema (``--data`` files must match it; frames of a user's own video are
cut into fixed-length clips of T frames, pixel values scaled to [0, 1]):

============= ======= ===================== ==========================================
dataset       dtype   shape                 meaning
============= ======= ===================== ==========================================
frames        float   (N, T, C, H, W)       clip frames, channels first, values in
                                            [0, 1] (the PSNR data range is 1);
                                            C is 1 or 3, H and W multiples of 4
pose_maps     float   (N, T, P, H, W)       the pose of each frame rendered as P
                                            maps (here P = 1: the skeleton drawn
                                            with left limbs 1.0, torso 0.8, right
                                            limbs 0.6), same H, W as the frames
keypoints     float   (N, T, J, 2)          optional, not read by the model: the
                                            pose label, x, y of J = 11 joints in
                                            [0, 1] image coordinates (y down)
action        int     (N,)                  optional, not read by the model:
                                            0 walk, 1 wave, 2 jumping jacks
============= ======= ===================== ==========================================
"""

from __future__ import annotations

import numpy as np

from core.data.hdf5 import DataFileError, DatasetSpec

JOINTS = ("head", "neck", "pelvis", "left_elbow", "left_hand", "right_elbow", "right_hand",
          "left_knee", "left_foot", "right_knee", "right_foot")
NUM_JOINTS = len(JOINTS)
ACTIONS = ("walk", "wave", "jumping_jacks")
# (from joint, to joint, intensity in the pose map): left 1.0, torso 0.8, right 0.6
SEGMENTS = (
    (0, 1, 0.8), (1, 2, 0.8),
    (1, 3, 1.0), (3, 4, 1.0), (1, 5, 0.6), (5, 6, 0.6),
    (2, 7, 1.0), (7, 8, 1.0), (2, 9, 0.6), (9, 10, 0.6),
)
POSE_CHANNELS = 1

SCHEMA = {
    "frames": DatasetSpec("f", ("N", "T", "C", "H", "W"), "clip frames in [0, 1], channels first"),
    "pose_maps": DatasetSpec("f", ("N", "T", "P", "H", "W"), "pose of each frame rendered as P maps"),
}

# Body model in units of body height, pelvis at the origin, y up.
_NECK_Y, _HEAD_Y, _HEAD_R = 0.40, 0.53, 0.08
_UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.19, 0.18, 0.25, 0.25


def _limb(origin: np.ndarray, angle: np.ndarray, length: float) -> np.ndarray:
    """End point of a limb of ``length`` hanging from ``origin`` (T, 2) at
    ``angle`` (T,) radians from straight down, positive towards +x."""
    return origin + length * np.stack([np.sin(angle), -np.cos(angle)], axis=-1)


def _pose(action: int, t: np.ndarray, omega: float, phase: float, amp: float) -> np.ndarray:
    """Joints (T, 11, 2) in body units, pelvis at the origin, y up."""
    T = len(t)
    s = np.sin(omega * t + phase)
    bounce = np.zeros(T)
    if action == 0:    # walk: arms and legs swing in opposition, knees bend on the forward swing
        l_sh, r_sh = 0.9 * amp * s, -0.9 * amp * s
        l_el, r_el = l_sh + 0.5, r_sh + 0.5
        l_hip, r_hip = -0.7 * amp * s, 0.7 * amp * s
        l_kn, r_kn = l_hip - 0.6 * np.clip(s, 0, None), r_hip - 0.6 * np.clip(-s, 0, None)
        bounce = 0.02 * np.abs(s)
    elif action == 1:  # wave: left arm raised and waving from the elbow, right arm hanging
        l_sh = np.full(T, -2.3) - 0.25 * amp * s
        l_el = l_sh - 0.3 - 1.1 * amp * s
        r_sh = np.full(T, 0.15) + 0.1 * s
        r_el = r_sh + 0.2
        l_hip, r_hip = np.full(T, -0.12), np.full(T, 0.12)
        l_kn, r_kn = l_hip, r_hip
    else:              # jumping jacks: arms and legs spread together, the body jumps
        spread = 0.5 * (1.0 - np.cos(omega * t + phase))                 # 0 .. 1
        l_sh, r_sh = -(0.2 + 2.4 * amp * spread), 0.2 + 2.4 * amp * spread
        l_el, r_el = l_sh - 0.2, r_sh + 0.2
        l_hip, r_hip = -(0.08 + 0.45 * amp * spread), 0.08 + 0.45 * amp * spread
        l_kn, r_kn = l_hip, r_hip
        bounce = 0.08 * spread
    zeros = np.zeros(T)
    pelvis = np.stack([zeros, bounce], axis=-1)
    neck = pelvis + [0.0, _NECK_Y]
    head = pelvis + [0.0, _HEAD_Y]
    l_elbow = _limb(neck, l_sh, _UPPER_ARM)
    r_elbow = _limb(neck, r_sh, _UPPER_ARM)
    l_knee, r_knee = _limb(pelvis, l_hip, _THIGH), _limb(pelvis, r_hip, _THIGH)
    joints = [head, neck, pelvis, l_elbow, _limb(l_elbow, l_el, _FOREARM), r_elbow, _limb(r_elbow, r_el, _FOREARM),
              l_knee, _limb(l_knee, l_kn, _SHIN), r_knee, _limb(r_knee, r_kn, _SHIN)]
    return np.stack(joints, axis=1)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of (Q, 2) points to (..., 2) segments a-b, shape (..., Q)."""
    ab = b - a                                                           # (..., 2)
    ap = points - a[..., None, :]                                        # (..., Q, 2)
    denom = np.maximum((ab * ab).sum(-1), 1e-12)[..., None]              # (..., 1)
    u = np.clip((ap * ab[..., None, :]).sum(-1) / denom, 0.0, 1.0)       # (..., Q)
    closest = a[..., None, :] + u[..., None] * ab[..., None, :]          # (..., Q, 2)
    return np.linalg.norm(points - closest, axis=-1)


def render_skeleton(keypoints: np.ndarray, size: int, thickness: float = 0.035, head_radius: float = 0.05) -> np.ndarray:
    """Anti-aliased pose maps (T, H, W) of (T, 11, 2) keypoints in [0, 1] image
    coordinates: each segment drawn with its intensity (left 1.0, torso 0.8,
    right 0.6), the head as a disc; ``thickness`` and ``head_radius`` are
    fractions of the frame size."""
    ys, xs = np.mgrid[0:size, 0:size]
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float64) + 0.5   # (HW, 2) pixel centres
    kp = keypoints * size                                                          # (T, J, 2) in pixels
    a = kp[:, [s[0] for s in SEGMENTS]]                                            # (T, S, 2)
    b = kp[:, [s[1] for s in SEGMENTS]]
    level = np.array([s[2] for s in SEGMENTS])[None, :, None]                       # (1, S, 1)
    cover = np.clip(thickness * size + 0.5 - _segment_distance(pixels, a, b), 0.0, 1.0)  # (T, S, HW)
    maps = (cover * level).max(axis=1)                                             # (T, HW)
    head_d = np.linalg.norm(pixels[None] - kp[:, None, 0], axis=-1)                # (T, HW)
    head = np.clip(head_radius * size + 0.5 - head_d, 0.0, 1.0) * 0.8
    return np.maximum(maps, head).reshape(len(kp), size, size)


def _background(rng: np.random.Generator, size: int, dark: bool) -> np.ndarray:
    """A static scene (3, H, W): vertical colour gradient, stripes, three soft shapes."""
    lo, hi = (0.08, 0.45) if dark else (0.55, 0.92)
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    top, bottom = rng.uniform(lo, hi, 3), rng.uniform(lo, hi, 3)
    bg = top[:, None, None] + (bottom - top)[:, None, None] * y[None]
    k = rng.uniform(2.0, 6.0, 2) * rng.choice([-1.0, 1.0], 2)
    bg = bg + rng.uniform(0.03, 0.08, 3)[:, None, None] * np.sin(2 * np.pi * (k[0] * x + k[1] * y) + rng.uniform(0, 2 * np.pi))[None]
    for _ in range(3):
        cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.2)
        alpha = 0.6 * np.clip((r - np.hypot(x - cx, y - cy)) * size, 0.0, 1.0)
        bg = bg * (1 - alpha) + rng.uniform(lo, hi, 3)[:, None, None] * alpha
    return np.clip(bg, 0.0, 1.0)


def _one_clip(rng: np.random.Generator, T: int, size: int, noise: float, speed: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    action = int(rng.integers(len(ACTIONS)))
    t = np.arange(T, dtype=np.float64)
    omega = 2 * np.pi * speed * rng.uniform(0.05, 0.1)   # speed 1: 0.5 .. 1 action cycles per 10 frames
    body = _pose(action, t, omega, rng.uniform(0, 2 * np.pi), rng.uniform(0.7, 1.0))   # (T, J, 2)
    height = rng.uniform(0.55, 0.68)
    x0, vx = rng.uniform(0.3, 0.7), rng.uniform(-0.012, 0.012)
    centre = np.stack([x0 + vx * t, np.full(T, 0.56)], axis=-1)                         # pelvis, image coords
    keypoints = centre[:, None, :] + height * body * np.array([1.0, -1.0])              # y down
    pose = render_skeleton(keypoints, size)                                             # (T, H, W)

    dark = bool(rng.random() < 0.5)
    scene = _background(rng, size, dark)                                                # (3, H, W)
    colour = rng.uniform(0.7, 1.0, 3) if dark else rng.uniform(0.0, 0.3, 3)
    alpha = np.clip(pose / 0.6, 0.0, 1.0)[:, None]                                      # coverage, (T, 1, H, W)
    frames = scene[None] * (1 - alpha) + colour[None, :, None, None] * alpha            # (T, 3, H, W)

    gain = 1.0 + rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * rng.uniform(0.03, 0.08) * t + rng.uniform(0, 2 * np.pi))
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    spot0, spot_v = rng.uniform(0.0, 1.0, 2), rng.uniform(-0.04, 0.04, 2)
    spot_c = spot0[None] + spot_v[None] * t[:, None]                                    # (T, 2)
    spot = rng.uniform(0.08, 0.18) * np.exp(-((x[None] - spot_c[:, :1, None]) ** 2 + (y[None] - spot_c[:, 1:, None]) ** 2) / (2 * 0.25**2))
    frames = frames * gain[:, None, None, None] + spot[:, None]                        # (T, 3, H, W)
    frames = frames + rng.normal(0.0, noise, size=frames.shape)
    return np.clip(frames, 0.0, 1.0), pose[:, None], keypoints, action


def generate_video(
    num_clips: int = 160,
    clip_length: int = 10,
    frame_size: int = 32,
    channels: int = 3,
    noise: float = 0.01,
    speed: float = 1.0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Deterministic synthetic set following :data:`SCHEMA` plus the optional
    ``keypoints`` and ``action`` (same arguments, same bytes). ``speed`` scales
    the tempo of every action (at 1, 0.5 to 1 cycles per 10 frames: a hand
    moves about 2-4 pixels a frame at 32x32)."""
    if clip_length < 2:
        raise ValueError(f"The value of `clip_length` is {clip_length}, but must be >= 2")
    if frame_size < 8 or frame_size % 4:
        raise ValueError(f"The value of `frame_size` is {frame_size}, but must be a multiple of 4, >= 8")
    if channels not in (1, 3):
        raise ValueError(f"The value of `channels` is {channels}, but must be 1 or 3")
    if speed <= 0:
        raise ValueError(f"The value of `speed` is {speed}, but must be > 0")
    rng = np.random.default_rng(seed)
    frames = np.zeros((num_clips, clip_length, channels, frame_size, frame_size), dtype=np.float32)
    pose_maps = np.zeros((num_clips, clip_length, POSE_CHANNELS, frame_size, frame_size), dtype=np.float32)
    keypoints = np.zeros((num_clips, clip_length, NUM_JOINTS, 2), dtype=np.float32)
    action = np.zeros(num_clips, dtype=np.int64)
    for i in range(num_clips):
        rgb, pose, kp, action[i] = _one_clip(rng, clip_length, frame_size, noise, speed)
        if channels == 1:
            rgb = np.tensordot(np.array([0.299, 0.587, 0.114]), rgb, axes=([0], [1]))[:, None]  # (T, 1, H, W)
        frames[i], pose_maps[i], keypoints[i] = rgb, pose, kp
    return {"frames": frames, "pose_maps": pose_maps, "keypoints": keypoints, "action": action}


def check_video_arrays(arrays: dict[str, np.ndarray], source: str) -> None:
    """Semantic checks the shape schema cannot express."""
    frames, pose = arrays["frames"], arrays["pose_maps"]
    N, T, C, H, W = frames.shape
    if pose.shape[-2:] != (H, W):
        raise DataFileError(f"{source}: dataset 'pose_maps' has frames of {pose.shape[-2]}x{pose.shape[-1]} pixels, "
                            f"expected the {H}x{W} of dataset 'frames'")
    if N < 2:
        raise DataFileError(f"{source}: dataset 'frames' needs at least 2 clips (one for validation), found {N}")
    if T < 2:
        raise DataFileError(f"{source}: dataset 'frames' needs clips of at least 2 frames, found {T}")
    if C not in (1, 3):
        raise DataFileError(f"{source}: dataset 'frames' has {C} channels, expected 1 or 3")
    if H % 4 or W % 4:
        raise DataFileError(f"{source}: dataset 'frames' has {H}x{W} frames, expected height and width multiples of 4")
    if frames.size and (float(frames.min()) < 0.0 or float(frames.max()) > 1.0):
        raise DataFileError(f"{source}: dataset 'frames' must lie in [0, 1] (the PSNR data range), "
                            f"found {float(frames.min()):.4g}..{float(frames.max()):.4g}")
