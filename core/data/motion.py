"""Emotion-conditioned body-keypoint sequences (the ``mdn_motion`` family).

No motion-capture set can be downloaded here, so this is a deterministic
generator with the shapes and units of a 2D pose-estimation export (COCO's 17
joints, normalised image coordinates, y up, 25 fps). Each of four emotions
changes the tempo, the amplitude and the posture of an idle "talking" motion
(arm swing, body bob, sway, head nod), and an emotion intensity that varies
within a clip scales the amplitude, so next-frame emotion is predictable from
past motion.

HDF5 schema (``--data`` files must match it; padding after ``lengths[i]``
frames is ignored):

=========== ======= ================ =============================================
dataset     dtype   shape            meaning
=========== ======= ================ =============================================
keypoints   float   (N, T, 17, 2)    joint x, y per frame, COCO joint order
emotion     float   (N, T, 4)        per-frame emotion intensities (neutral,
                                     happy, sad, angry), each in [0, 1]
lengths     int     (N,)             valid frames of each sequence, 3 <= l <= T
label       int     (N,)             dominant emotion class in [0, 4)
=========== ======= ================ =============================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.hdf5 import DataFileError, DatasetSpec

JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
EMOTIONS = ("neutral", "happy", "sad", "angry")
NUM_JOINTS = len(JOINTS)
NUM_EMOTIONS = len(EMOTIONS)

SCHEMA = {
    "keypoints": DatasetSpec("f", ("N", "T", NUM_JOINTS, 2), "joint x, y per frame, COCO order"),
    "emotion": DatasetSpec("f", ("N", "T", NUM_EMOTIONS), "per-frame emotion intensities"),
    "lengths": DatasetSpec("i", ("N",), "valid frames per sequence"),
    "label": DatasetSpec("i", ("N",), "emotion class"),
}

# A standing figure facing the camera, normalised units, y up.
_TEMPLATE = np.array(
    [
        [0.00, 0.62], [-0.03, 0.65], [0.03, 0.65], [-0.07, 0.63], [0.07, 0.63],
        [-0.18, 0.45], [0.18, 0.45], [-0.24, 0.20], [0.24, 0.20],
        [-0.26, -0.02], [0.26, -0.02], [-0.11, -0.05], [0.11, -0.05],
        [-0.12, -0.45], [0.12, -0.45], [-0.12, -0.85], [0.12, -0.85],
    ],
    dtype=np.float64,
)
_HEAD = [0, 1, 2, 3, 4]


@dataclass(frozen=True)
class _Style:
    tempo_hz: float
    amplitude: float
    head_dy: float     # head bowed (negative) or raised
    shoulder_dy: float
    arm_spread: float  # radians the arms are held away from the body


_STYLES = {
    0: _Style(tempo_hz=0.9, amplitude=0.25, head_dy=0.00, shoulder_dy=0.00, arm_spread=0.00),  # neutral
    1: _Style(tempo_hz=1.6, amplitude=0.55, head_dy=0.03, shoulder_dy=0.02, arm_spread=0.45),  # happy
    2: _Style(tempo_hz=0.5, amplitude=0.12, head_dy=-0.10, shoulder_dy=-0.04, arm_spread=-0.05),  # sad
    3: _Style(tempo_hz=2.2, amplitude=0.70, head_dy=-0.02, shoulder_dy=0.05, arm_spread=0.25),  # angry
}


def _rotate(points: np.ndarray, pivot: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate (L, J, 2) points about (L, 2) pivots by (L,) angles."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    d = points - pivot[:, None, :]
    x = c * d[..., 0] - s * d[..., 1]
    y = s * d[..., 0] + c * d[..., 1]
    return np.stack([x, y], axis=-1) + pivot[:, None, :]


def _one_sequence(rng: np.random.Generator, label: int, length: int, fps: float, noise: float) -> tuple[np.ndarray, np.ndarray]:
    style = _STYLES[label]
    t = np.arange(length) / fps
    tempo = style.tempo_hz * rng.uniform(0.85, 1.15)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    start, rise = rng.uniform(0.35, 0.7), rng.uniform(0.1, 0.3)
    intensity = np.clip(start + rise * np.sin(np.pi * t / max(t[-1], 1e-6)), 0.0, 1.0)
    amp = style.amplitude * intensity
    swing = np.sin(2.0 * np.pi * tempo * t + phase)

    pose = np.repeat(_TEMPLATE[None], length, axis=0)
    pose[:, _HEAD, 1] += style.head_dy + (0.04 * amp * swing)[:, None]
    pose[:, [5, 6], 1] += style.shoulder_dy
    for side, sign in ((0, 1.0), (1, -1.0)):  # left arm swings opposite to the right
        shoulder, elbow, wrist = 5 + side, 7 + side, 9 + side
        angle = sign * (style.arm_spread + amp * swing) * (-1.0 if side == 0 else 1.0)
        pose[:, [elbow, wrist]] = _rotate(pose[:, [elbow, wrist]], pose[:, shoulder], angle)
        pose[:, [wrist]] = _rotate(pose[:, [wrist]], pose[:, elbow], 0.6 * angle)
    pose[..., 1] += 0.03 * amp[:, None] * np.abs(swing)[:, None]          # bob
    pose[..., 0] += 0.04 * amp[:, None] * np.sin(np.pi * tempo * t + phase)[:, None]  # sway
    pose = pose * rng.uniform(0.9, 1.1) + rng.normal(0.0, 0.05, size=2)
    pose += rng.normal(0.0, noise, size=pose.shape)

    emotion = np.zeros((length, NUM_EMOTIONS))
    emotion[:, label] = intensity
    return pose, emotion


def generate_motion(
    num_sequences: int = 384,
    min_length: int = 32,
    max_length: int = 64,
    fps: float = 25.0,
    noise: float = 0.004,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Deterministic synthetic set following :data:`SCHEMA` (same seed, same bytes)."""
    if not 3 <= min_length <= max_length:
        raise ValueError(f"The value of `min_length` is {min_length}, but must be 3 <= min_length <= max_length ({max_length})")
    rng = np.random.default_rng(seed)
    keypoints = np.zeros((num_sequences, max_length, NUM_JOINTS, 2), dtype=np.float32)
    emotion = np.zeros((num_sequences, max_length, NUM_EMOTIONS), dtype=np.float32)
    labels = rng.permutation(np.arange(num_sequences) % NUM_EMOTIONS).astype(np.int64)
    lengths = rng.integers(min_length, max_length + 1, size=num_sequences).astype(np.int64)
    for i in range(num_sequences):
        pose, emo = _one_sequence(rng, int(labels[i]), int(lengths[i]), fps, noise)
        keypoints[i, : lengths[i]] = pose
        emotion[i, : lengths[i]] = emo
    return {"keypoints": keypoints, "emotion": emotion, "lengths": lengths, "label": labels}


def check_motion_arrays(arrays: dict[str, np.ndarray], source: str) -> None:
    """Semantic checks the shape schema cannot express."""
    lengths, T = arrays["lengths"], arrays["keypoints"].shape[1]
    bad = np.flatnonzero((lengths < 3) | (lengths > T))
    if bad.size:
        raise DataFileError(f"{source}: dataset 'lengths' has {bad.size} values outside [3, {T}] (first at index {bad[0]}: {lengths[bad[0]]})")
    label = arrays["label"]
    if label.size and (label.min() < 0 or label.max() >= NUM_EMOTIONS):
        raise DataFileError(f"{source}: dataset 'label' must lie in [0, {NUM_EMOTIONS}), found {label.min()}..{label.max()}")
    if arrays["keypoints"].shape[0] < 2:
        raise DataFileError(f"{source}: need at least 2 sequences (one for validation), found {arrays['keypoints'].shape[0]}")
