"""Synthetic articulated hand: skeleton, actions over time, depth renderer.

Two families read this one generator. ``hand_pose`` regresses the 21 joints
from single depth frames. ``hand_action`` classifies the action from joint
sequences. No hand data set can be downloaded here, so this module generates
one. The hand, the camera and the file layout follow the real depth-based hand
data sets (NYU, ICVL, MSRA, FPHA): depth maps in mm from a pinhole camera,
background 0, and 21 joints in camera mm.

**Skeleton.** 21 joints: the wrist, then 4 per finger from the base to the tip.
The thumb has CMC, MCP, IP and TIP. The other fingers have MCP, PIP, DIP and
TIP. The order is thumb, index, middle, ring, pinky (the FPHA / BigHand
order). Bone lengths are in mm (:data:`BONE_LENGTHS`), and each sequence
scales the whole hand by 0.85-1.15. Each finger is a planar chain: its three
flexion angles bend the bones towards the palm about one axis. One spread value
splays the four fingers in the palm plane (:func:`forward_kinematics`).

**Actions.** A sequence is an idle, relaxed hand, then one action, then idle
again. The action occupies 45-70% of the frames, with smooth transitions in and
out. A classifier must find the action segment. The idle pose looks the same for
every class. The six actions (:data:`ACTIONS`) are grasp (open/close), wave
(in-plane roll), point (index out, hand sliding sideways), pinch (thumb and
index), tap (fingers in turn) and flip (turning the palm). Tempo, phase,
amplitude, orientation, position and hand size are drawn for each sequence.

**Camera and renderer.** A pinhole camera: ``u = fx x / z + cx``,
``v = fy y / z + cy``. Pixel ``(row v, column u)`` has its centre at integer
``(u, v)``, with ``fx = fy = W`` and ``cx = cy = (W - 1) / 2``. The
surface is a union of spheres along every bone (capsules), spheres filling the
palm, and a forearm stub below the wrist, which real crops must cope with. Each
pixel's depth is the exact ray-sphere intersection nearest the camera
(a z-buffer over spheres, vectorised with numpy). Sensor noise is Gaussian on
the surface plus randomly dropped pixels (depth 0, like a structured-light
sensor's holes).

HDF5 schema of ``hand_pose`` (:data:`SCHEMA`; a real data set converts into it
one frame per row):

============ ======= ============== ==============================================
dataset      dtype   shape          meaning
============ ======= ============== ==============================================
depth        float   (N, H, W)      depth in mm along the optical axis, 0 where
                                    there is no reading (background, holes)
joints       float   (N, 21, 3)     joint x, y, z in camera mm (x right, y down,
                                    z forward), order of :data:`JOINTS`
label        int     (N,)           action class of the frame's sequence, >= 0
sequence     int     (N,)           id of the sequence the frame comes from; the
                                    train/validation split keeps ids whole
intrinsics   float   (4,)           fx, fy, cx, cy in pixels (pixel centres at
                                    integer coordinates)
============ ======= ============== ==============================================

HDF5 schema of ``hand_action`` (:data:`SEQUENCE_SCHEMA`; no depth is rendered;
padding after ``lengths[i]`` frames is ignored):

============ ======= ============== ==============================================
dataset      dtype   shape          meaning
============ ======= ============== ==============================================
joints       float   (N, T, 21, 3)  joint x, y, z per frame in camera mm
lengths      int     (N,)           valid frames of each sequence, 2 <= l <= T
label        int     (N,)           action class of the sequence, >= 0
============ ======= ============== ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.hdf5 import DataFileError, DatasetSpec

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
JOINTS = ("wrist",) + tuple(
    f"{finger}_{part}"
    for finger, parts in zip(FINGERS, [("cmc", "mcp", "ip", "tip")] + [("mcp", "pip", "dip", "tip")] * 4)
    for part in parts
)
NUM_JOINTS = len(JOINTS)  # 21
ACTIONS = ("grasp", "wave", "point", "pinch", "tap", "flip")
NUM_ACTIONS = len(ACTIONS)
# Parent of every joint (the wrist is the root): the bones of the skeleton.
PARENTS = (-1,) + tuple(p for f in range(5) for p in (0, 1 + 4 * f, 2 + 4 * f, 3 + 4 * f))
BONES = tuple((PARENTS[j], j) for j in range(1, NUM_JOINTS))

SCHEMA = {
    "depth": DatasetSpec("f", ("N", "H", "W"), "depth in mm, 0 = no reading"),
    "joints": DatasetSpec("f", ("N", NUM_JOINTS, 3), "joint x, y, z in camera mm"),
    "label": DatasetSpec("i", ("N",), "action class"),
    "sequence": DatasetSpec("i", ("N",), "sequence id of each frame"),
    "intrinsics": DatasetSpec("f", (4,), "fx, fy, cx, cy in pixels"),
}
SEQUENCE_SCHEMA = {
    "joints": DatasetSpec("f", ("N", "T", NUM_JOINTS, 3), "joint x, y, z per frame in camera mm"),
    "lengths": DatasetSpec("i", ("N",), "valid frames per sequence"),
    "label": DatasetSpec("i", ("N",), "action class"),
}

# Bone lengths in mm of an average adult hand (three bones per finger,
# base to tip; the thumb's first bone is its metacarpal).
BONE_LENGTHS = {
    "thumb": (38.0, 32.0, 26.0),
    "index": (40.0, 24.0, 20.0),
    "middle": (45.0, 28.0, 21.0),
    "ring": (42.0, 27.0, 20.0),
    "pinky": (33.0, 20.0, 18.0),
}
# Finger bases (thumb CMC, other MCPs) relative to the wrist, local frame in mm:
# +y towards the fingers, +x towards the thumb, the palm faces -z.
_BASES = np.array([[20.0, 20.0, -6.0], [24.0, 84.0, 0.0], [6.0, 88.0, 0.0], [-12.0, 83.0, 0.0], [-28.0, 74.0, 0.0]])
_SPLAY = np.deg2rad([0.0, 8.0, 0.0, -8.0, -17.0])        # finger directions in the palm plane at spread 0.5
_MAX_FLEX = np.deg2rad([[35.0, 45.0, 60.0]] + [[85.0, 100.0, 70.0]] * 4)  # (5, 3) angles at flexion 1
_THUMB_DIR = np.array([0.75, 0.6, -0.3]) / np.linalg.norm([0.75, 0.6, -0.3])
_THUMB_BEND = np.array([-0.6, 0.35, -0.7])
_THUMB_BEND = _THUMB_BEND - _THUMB_BEND.dot(_THUMB_DIR) * _THUMB_DIR
_THUMB_BEND /= np.linalg.norm(_THUMB_BEND)
_PALM_NORMAL = np.array([0.0, 0.0, -1.0])
# Rendering radii in mm (scaled with the hand): bones base to tip, palm, forearm.
_FINGER_RADII = np.array([[11.0, 10.0, 9.0]] + [[10.0, 9.0, 8.0]] * 4)
_PALM_RADIUS, _FOREARM_RADIUS, _FOREARM_LENGTH = 13.0, 22.0, 90.0


def default_intrinsics(image_size: int) -> np.ndarray:
    """fx, fy, cx, cy of the synthetic camera for a square image of ``image_size`` pixels."""
    f = 1.0 * image_size
    c = (image_size - 1) / 2.0
    return np.array([f, f, c, c], dtype=np.float64)


def forward_kinematics(flex: np.ndarray, spread: np.ndarray, scale: np.ndarray | float = 1.0) -> np.ndarray:
    """Joint positions in the local hand frame (mm), shape (..., 21, 3).

    ``flex`` (..., 5) is each finger's flexion in [0, 1] (0 straight, 1 fist),
    ``spread`` (...) splays the fingers (0.5 = rest). Bone ``k`` of a finger
    points along ``cos(phi_k) d0 + sin(phi_k) b``, where ``phi_k`` is the sum of
    the first k flexion angles, ``d0`` is the finger's direction and ``b`` its
    bending direction (the palm normal, or across the palm for the thumb).
    """
    flex = np.asarray(flex, dtype=np.float64)
    lead = flex.shape[:-1]
    spread = np.broadcast_to(np.asarray(spread, dtype=np.float64), lead)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), lead)
    joints = np.zeros(lead + (NUM_JOINTS, 3))
    for f, finger in enumerate(FINGERS):
        if f == 0:
            d0 = np.broadcast_to(_THUMB_DIR, lead + (3,))
            bend = np.broadcast_to(_THUMB_BEND, lead + (3,))
        else:
            alpha = _SPLAY[f] * (0.5 + spread)                              # (...)
            d0 = np.stack([np.sin(alpha), np.cos(alpha), np.zeros_like(alpha)], axis=-1)
            bend = np.broadcast_to(_PALM_NORMAL, lead + (3,))
        pos = _BASES[f] * scale[..., None]                                   # (..., 3)
        joints[..., 1 + 4 * f, :] = pos
        phi = np.zeros(lead)
        for k, length in enumerate(BONE_LENGTHS[finger]):
            phi = phi + flex[..., f] * _MAX_FLEX[f, k]
            direction = np.cos(phi)[..., None] * d0 + np.sin(phi)[..., None] * bend
            pos = pos + length * scale[..., None] * direction
            joints[..., 2 + 4 * f + k, :] = pos
    return joints


def rotation_matrix(roll: np.ndarray, yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """R = Rz(roll) Ry(yaw) Rx(pitch), shape (..., 3, 3): roll is in-plane for the camera."""
    roll, yaw, pitch = np.broadcast_arrays(np.asarray(roll, float), np.asarray(yaw, float), np.asarray(pitch, float))
    cz, sz, cy, sy, cx, sx = np.cos(roll), np.sin(roll), np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    one, zero = np.ones_like(roll), np.zeros_like(roll)
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(roll.shape + (3, 3))
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(roll.shape + (3, 3))
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(roll.shape + (3, 3))
    return rz @ ry @ rx


# Local frame -> camera frame at zero rotation: fingers up in the image (camera
# y points down), palm towards the camera (rotation by 180 degrees about z).
_R0 = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class HandSequence:
    """One generated sequence: clean joints (T, 21, 3) in camera mm, its action
    label, the frames of the action segment and the hand scale."""

    joints: np.ndarray
    label: int
    active: tuple[int, int]
    scale: float


def _action_params(label: int, phase: np.ndarray, amp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flexion (L, 5), spread (L,), rotation offsets (L, 3) = roll, yaw, pitch
    in radians, and translation offsets (L, 3) in mm of one action."""
    L = len(phase)
    flex = np.zeros((L, 5))
    spread = np.full(L, 0.5)
    rot = np.zeros((L, 3))
    shift = np.zeros((L, 3))
    s, c = np.sin(phase), np.cos(phase)
    if label == 0:    # grasp: open and close the whole hand
        closing = 0.5 - 0.45 * amp * c
        flex[:] = closing[:, None]
        flex[:, 0] = 0.4 - 0.35 * amp * c
        spread = 0.8 - 0.6 * closing
    elif label == 1:  # wave: open hand rolling about the wrist
        flex[:] = 0.06
        spread[:] = 0.9
        rot[:, 0] = 0.45 * amp * s
    elif label == 2:  # point: index out, hand sliding sideways
        flex[:] = [0.6, 0.04, 0.9, 0.92, 0.9]
        spread[:] = 0.3
        shift[:, 0] = 30.0 * amp * s
        rot[:, 1] = 0.2 * amp * s
    elif label == 3:  # pinch: thumb and index close together
        pinch = 0.5 * (1.0 - c) * amp
        flex[:] = 0.1
        flex[:, 0] = 0.3 + 0.6 * pinch
        flex[:, 1] = 0.15 + 0.5 * pinch
        spread[:] = 0.55
    elif label == 4:  # tap: index..pinky flex in turn
        flex[:, 0] = 0.2
        for f in range(1, 5):
            flex[:, f] = 0.1 + 0.65 * amp * np.clip(np.sin(phase - (f - 1) * np.pi / 2.0), 0.0, None) ** 2
    elif label == 5:  # flip: turn the palm away and back
        flex[:] = 0.25
        rot[:, 1] = 1.0 * amp * s
    else:
        raise ValueError(f"The value of `label` is {label}, but must be in [0, {NUM_ACTIONS})")
    return flex, spread, rot, shift


def _one_sequence(rng: np.random.Generator, label: int, length: int, fps: float) -> HandSequence:
    t = np.arange(length) / fps
    active_len = int(round(rng.uniform(0.45, 0.7) * length))
    start = int(rng.integers(0, length - active_len + 1))
    ramp = max(1.0, 0.15 * active_len)
    idx = np.arange(length)
    envelope = np.clip(np.minimum(idx - start + 1, start + active_len - idx) / ramp, 0.0, 1.0)  # (L,)
    tempo = rng.uniform(0.6, 1.1)                                # Hz
    phase = 2.0 * np.pi * tempo * t + rng.uniform(0.0, 2.0 * np.pi)
    flex, spread, rot, shift = _action_params(label, phase, amp=rng.uniform(0.8, 1.0))
    # idle: relaxed, slightly curled, drifting a little
    drift = rng.uniform(0.0, 2.0 * np.pi)
    idle_flex = 0.22 + 0.04 * np.sin(0.5 * t[:, None] + drift + np.arange(5))
    w = envelope[:, None]
    flex = idle_flex + w * (flex - idle_flex)
    spread = 0.5 + envelope * (spread - 0.5)
    rot, shift = w * rot, w * shift

    scale = rng.uniform(0.85, 1.15)
    local = forward_kinematics(flex, spread, scale)                                        # (L, 21, 3)
    base = rng.uniform([-0.35, -0.35, -0.25], [0.35, 0.35, 0.25])                          # roll, yaw, pitch
    R = rotation_matrix(base[0] + rot[:, 0], base[1] + rot[:, 1], base[2] + rot[:, 2]) @ _R0  # (L, 3, 3)
    position = rng.uniform([-20.0, 50.0, 360.0], [20.0, 80.0, 460.0]) + shift                # wrist, (L, 3)
    joints = np.einsum("lij,lkj->lki", R, local) + position[:, None, :]
    return HandSequence(joints=joints, label=label, active=(start, start + active_len), scale=float(scale))


def generate_hand_sequences(
    num_sequences: int,
    min_length: int,
    max_length: int,
    *,
    fps: float = 15.0,
    seed: int = 0,
) -> list[HandSequence]:
    """Deterministic clean sequences, classes balanced (same seed, same joints)."""
    if not 2 <= min_length <= max_length:
        raise ValueError(f"The value of `min_length` is {min_length}, but must be 2 <= min_length <= max_length ({max_length})")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_sequences) % NUM_ACTIONS)
    lengths = rng.integers(min_length, max_length + 1, size=num_sequences)
    return [_one_sequence(rng, int(labels[i]), int(lengths[i]), fps) for i in range(num_sequences)]


def generate_hand_actions(
    num_sequences: int = 240,
    min_length: int = 24,
    max_length: int = 48,
    joint_noise_mm: float = 2.0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Joint sequences following :data:`SEQUENCE_SCHEMA`, with Gaussian jitter of
    ``joint_noise_mm`` per coordinate as a pose estimator's output would have."""
    sequences = generate_hand_sequences(num_sequences, min_length, max_length, seed=seed)
    rng = np.random.default_rng([seed, 1])
    joints = np.zeros((num_sequences, max_length, NUM_JOINTS, 3), dtype=np.float32)
    lengths = np.zeros(num_sequences, dtype=np.int64)
    for i, seq in enumerate(sequences):
        L = len(seq.joints)
        joints[i, :L] = seq.joints + rng.normal(0.0, joint_noise_mm, size=seq.joints.shape)
        lengths[i] = L
    labels = np.array([s.label for s in sequences], dtype=np.int64)
    return {"joints": joints, "lengths": lengths, "label": labels}


def hand_spheres(joints: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Sphere centres (S, 3) and radii (S,) in mm that make up the hand surface.

    Spheres are placed every half radius along each bone, so their union is a
    capsule. A 5 x 4 grid of spheres fills the palm between the wrist and the
    finger bases. A forearm stub continues from the wrist away from the
    fingers. Only the joints and the scale are needed, so a real skeleton
    renders too.
    """
    centres, radii = [], []

    def capsule(a: np.ndarray, b: np.ndarray, r: float) -> None:
        n = int(np.ceil(np.linalg.norm(b - a) / (0.5 * r))) + 1
        s = np.linspace(0.0, 1.0, n)[:, None]
        centres.append(a + s * (b - a))
        radii.append(np.full(n, r))

    for f in range(5):
        chain = [0 if f == 0 else 1 + 4 * f] + [2 + 4 * f + k for k in range(3)]
        if f == 0:
            capsule(joints[0], joints[1], _FINGER_RADII[0, 0] * scale)
        for k in range(3):
            capsule(joints[chain[k]], joints[chain[k + 1]], _FINGER_RADII[f, k] * scale)
    wrist, index_mcp, pinky_mcp, middle_mcp = joints[0], joints[5], joints[17], joints[9]
    for s in np.linspace(0.15, 1.0, 5):
        for lateral in np.linspace(0.0, 1.0, 4):
            centres.append((wrist * (1 - s) + s * (index_mcp * (1 - lateral) + pinky_mcp * lateral))[None])
            radii.append(np.array([_PALM_RADIUS * scale]))
    axis = wrist - middle_mcp
    axis = axis / max(np.linalg.norm(axis), 1e-9)
    capsule(wrist, wrist + _FOREARM_LENGTH * scale * axis, _FOREARM_RADIUS * scale)
    return np.concatenate(centres), np.concatenate(radii)


def render_depth(centres: np.ndarray, radii: np.ndarray, intrinsics: np.ndarray, height: int, width: int) -> np.ndarray:
    """Noise-free depth map (H, W) in mm of a union of spheres, 0 where no sphere is hit.

    The ray of pixel (v, u) is ``t (x_n, y_n, 1)`` with ``x_n = (u - cx) / fx``;
    its first intersection with a sphere (centre c, radius r) solves
    ``|t d - c|^2 = r^2`` for the smaller root, and because ``d_z = 1``, ``t``
    is the depth z. Each sphere is only tested against the pixels of a window
    around its projection (large enough for the largest projected radius), and
    the z-buffer keeps the nearest root per pixel (``np.minimum.at``).
    """
    fx, fy, cx, cy = (float(x) for x in intrinsics)
    z = np.maximum(centres[:, 2], radii + 1e-3)                           # (S,) in front of the camera
    u0 = np.round(fx * centres[:, 0] / z + cx).astype(np.int64)
    v0 = np.round(fy * centres[:, 1] / z + cy).astype(np.int64)
    k = int(np.ceil(max(fx, fy) * float((radii / (z - radii)).max()))) + 1
    offs = np.arange(-k, k + 1)
    uu = (u0[:, None, None] + offs[None, None, :]).repeat(2 * k + 1, axis=1)   # (S, 2k+1, 2k+1)
    vv = (v0[:, None, None] + offs[None, :, None]).repeat(2 * k + 1, axis=2)
    dx, dy = (uu - cx) / fx, (vv - cy) / fy                               # ray direction (dx, dy, 1)
    c = centres[:, None, None, :]
    a = dx * dx + dy * dy + 1.0
    b = dx * c[..., 0] + dy * c[..., 1] + c[..., 2]
    cc = (centres * centres).sum(-1)[:, None, None] - radii[:, None, None] ** 2
    disc = b * b - a * cc
    hit = (disc >= 0.0) & (uu >= 0) & (uu < width) & (vv >= 0) & (vv < height)
    t = (b[hit] - np.sqrt(disc[hit])) / a[hit]
    front = t > 0.0
    zbuf = np.full(height * width, np.inf)
    np.minimum.at(zbuf, (vv[hit] * width + uu[hit])[front], t[front])
    return np.where(np.isfinite(zbuf), zbuf, 0.0).reshape(height, width)


def generate_hand_depth(
    num_sequences: int = 60,
    frames_per_sequence: int = 10,
    image_size: int = 64,
    noise_mm: float = 1.0,
    dropout: float = 0.01,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Rendered frames following :data:`SCHEMA` (same arguments, same bytes).

    Each sequence is 32-48 frames long. ``frames_per_sequence`` frames are taken
    evenly from its action segment and rendered. Gaussian noise with standard
    deviation ``noise_mm`` is added to the surface, and a ``dropout`` fraction
    of the hand pixels is lost.
    """
    sequences = generate_hand_sequences(num_sequences, 32, 48, seed=seed)
    K = default_intrinsics(image_size)
    rng = np.random.default_rng([seed, 2])
    N = num_sequences * frames_per_sequence
    depth = np.zeros((N, image_size, image_size), dtype=np.float32)
    joints = np.zeros((N, NUM_JOINTS, 3), dtype=np.float32)
    label = np.zeros(N, dtype=np.int64)
    sequence = np.zeros(N, dtype=np.int64)
    row = 0
    for s, seq in enumerate(sequences):
        a, b = seq.active
        frames = np.unique(np.linspace(a, b - 1, frames_per_sequence).round().astype(int))
        frames = np.resize(frames, frames_per_sequence)  # short segments repeat frames
        for f in frames:
            centres, radii = hand_spheres(seq.joints[f], seq.scale)
            img = render_depth(centres, radii, K, image_size, image_size)
            hand = img > 0
            img = np.where(hand, img + rng.normal(0.0, noise_mm, img.shape), 0.0)
            img[hand & (rng.random(img.shape) < dropout)] = 0.0
            depth[row], joints[row], label[row], sequence[row] = img, seq.joints[f], seq.label, s
            row += 1
    return {"depth": depth, "joints": joints, "label": label, "sequence": sequence,
            "intrinsics": K.astype(np.float32)}


def check_hand_arrays(arrays: dict[str, np.ndarray], source: str) -> None:
    """Semantic checks of a ``hand_pose`` file that the shape schema cannot express."""
    depth, joints = arrays["depth"], arrays["joints"]
    fx, fy = (float(x) for x in arrays["intrinsics"][:2])
    if fx <= 0 or fy <= 0:
        raise DataFileError(f"{source}: dataset 'intrinsics' must have fx, fy > 0, found {fx}, {fy}")
    if depth.size and depth.min() < 0:
        raise DataFileError(f"{source}: dataset 'depth' has negative values (min {depth.min()}); no reading must be 0")
    valid = (depth > 0).reshape(len(depth), -1).sum(1)
    bad = np.flatnonzero(valid < 16)
    if bad.size:
        raise DataFileError(f"{source}: dataset 'depth' has {bad.size} frames with fewer than 16 hand pixels (first at index {bad[0]})")
    if joints.size and joints[..., 2].min() <= 0:
        raise DataFileError(f"{source}: dataset 'joints' must lie in front of the camera (z > 0), found z = {joints[..., 2].min()}")
    _check_labels(arrays["label"], source)
    seq = arrays["sequence"]
    if seq.size and seq.min() < 0:
        raise DataFileError(f"{source}: dataset 'sequence' must be >= 0, found {seq.min()}")
    if len(np.unique(seq)) < 2:
        raise DataFileError(f"{source}: dataset 'sequence' needs at least 2 distinct ids (one for validation), found {len(np.unique(seq))}")


def check_sequence_arrays(arrays: dict[str, np.ndarray], source: str) -> None:
    """Semantic checks of a ``hand_action`` file that the shape schema cannot express."""
    lengths, T = arrays["lengths"], arrays["joints"].shape[1]
    bad = np.flatnonzero((lengths < 2) | (lengths > T))
    if bad.size:
        raise DataFileError(f"{source}: dataset 'lengths' has {bad.size} values outside [2, {T}] (first at index {bad[0]}: {lengths[bad[0]]})")
    _check_labels(arrays["label"], source)
    if arrays["joints"].shape[0] < 2:
        raise DataFileError(f"{source}: need at least 2 sequences (one for validation), found {arrays['joints'].shape[0]}")


def _check_labels(label: np.ndarray, source: str) -> None:
    if label.size and label.min() < 0:
        raise DataFileError(f"{source}: dataset 'label' must be >= 0, found {label.min()}")
    if label.size and label.max() >= 1000:
        raise DataFileError(f"{source}: dataset 'label' must be a class index < 1000, found {label.max()}")


def num_classes(label: np.ndarray) -> int:
    """Number of action classes of a data set: the largest label + 1, at least 2."""
    return max(2, int(label.max()) + 1 if label.size else 2)
