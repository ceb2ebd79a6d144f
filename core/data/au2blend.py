"""Facial action units -> ARKit blendshape weights per frame (the ``au2blend`` family).

No paired AU / blendshape capture can be downloaded here, so this is a
deterministic generator with the shapes and units of the real thing: the 17
action-unit intensities OpenFace 2.0 estimates (FACS intensity scale 0-5) as
input, and the 61 curves an iPhone Live Link Face capture exports (the 52 ARKit
blendshapes, then head and eye yaw / pitch / roll) as targets, at 30 fps.

The AU sequences are smooth and bursty: a low, slowly drifting activity on
every AU, plus expression events (smile, surprise, frown, disgust, sadness,
talking) that raise a group of AUs together under a raised-cosine envelope,
plus short blinks (AU45). Sequence lengths vary between ``min_length`` and
``max_length`` frames; the generator takes any (a few hundred frames is fine),
the ``au2blend`` config defaults to 24-96 frames (0.8-3.2 s) to keep the
step-wise seq2seq variants of the ``grunet_arch`` study inside its CPU budget.

The targets follow a fixed nonlinear, slightly delayed mapping of the AUs plus
noise; "fixed" means the same for every data seed (it is built from
:data:`MAPPING_SEED`), so two data sets differ in their sequences only:

- the AUs are scaled to [0, 1] and delayed by ``delay`` frames (2 by default:
  a rig follows the tracker a little late);
- each blendshape is a sparse non-negative combination of its FACS
  counterparts (``MouthSmile* <- AU12``, ``JawOpen <- AU26, AU25``, ...; the
  table is :data:`ANCHORS`) plus small fixed random weights, plus one
  multiplicative AU-pair interaction, minus a threshold, passed through
  ``tanh(1.5 * relu(z))``: zero at rest, saturating at 1;
- the nine rotation curves are ``0.5 + 0.5 * tanh(z)`` of a signed combination
  (0.5 = looking straight ahead; Live Link Face writes them in [-1, 1], here
  they share the [0, 1] range of the blendshapes);
- Gaussian noise (``noise``, 0.02) is added and every weight clipped to [0, 1],
  so a resting face has exact zeros, and a regressor with a linear output can
  undershoot them (what the NegReLU penalty of the family is about).

HDF5 schema (``--data`` files must match it; frames after ``lengths[i]`` are
padding and ignored):

=========== ======= ============ ==================================================
dataset     dtype   shape        meaning
=========== ======= ============ ==================================================
au          float   (N, T, 17)   action-unit intensities per frame, order of
                                 :data:`ACTION_UNITS` (OpenFace scale 0-5)
blendshapes float   (N, T, 61)   blendshape weights per frame in [0, 1], order of
                                 :data:`BLENDSHAPES` (Live Link Face CSV order)
lengths     int     (N,)         real frames of each sequence, 2 <= l <= T
=========== ======= ============ ==================================================
"""

from __future__ import annotations

import numpy as np

from core.data.hdf5 import DataFileError, DatasetSpec

ACTION_UNITS = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)
_EYE = ("EyeBlink", "EyeLookDown", "EyeLookIn", "EyeLookOut", "EyeLookUp", "EyeSquint", "EyeWide")
ARKIT_BLENDSHAPES = (
    *[f"{n}Left" for n in _EYE], *[f"{n}Right" for n in _EYE],
    "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel", "MouthPucker",
    "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight",
    "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight", "MouthRollLower",
    "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight",
    "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight",
    "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)
ROTATIONS = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)
BLENDSHAPES = ARKIT_BLENDSHAPES + ROTATIONS
NUM_AUS = len(ACTION_UNITS)            # 17
NUM_BLENDSHAPES = len(BLENDSHAPES)     # 61
AU_MAX = 5.0                           # FACS / OpenFace intensity scale
FPS = 30.0
MAPPING_SEED = 20_240_617              # the AU -> blendshape mapping, the same for every data seed

SCHEMA = {
    "au": DatasetSpec("f", ("N", "T", NUM_AUS), "action-unit intensities per frame (0-5)"),
    "blendshapes": DatasetSpec("f", ("N", "T", NUM_BLENDSHAPES), "blendshape weights per frame in [0, 1]"),
    "lengths": DatasetSpec("i", ("N",), "real frames per sequence"),
}

# FACS counterparts of the ARKit shapes (Ekman & Friesen's AU descriptions
# against Apple's ARFaceAnchor.BlendShapeLocation docs); a name without a side
# applies to both the Left and the Right shape.
ANCHORS: dict[str, tuple[tuple[str, float], ...]] = {
    "EyeBlink": (("AU45", 1.2), ("AU07", 0.3)),
    "EyeSquint": (("AU07", 0.9), ("AU06", 0.4)),
    "EyeWide": (("AU05", 1.1),),
    "EyeLookDown": (("AU04", 0.2), ("AU15", 0.2)),
    "JawOpen": (("AU26", 1.0), ("AU25", 0.4)),
    "MouthClose": (("AU23", 0.5), ("AU17", 0.3)),
    "MouthFunnel": (("AU25", 0.3), ("AU23", 0.3)),
    "MouthPucker": (("AU23", 0.4), ("AU17", 0.3)),
    "MouthSmile": (("AU12", 1.2), ("AU06", 0.2)),
    "MouthFrown": (("AU15", 1.1),),
    "MouthDimple": (("AU14", 1.0), ("AU12", 0.2)),
    "MouthStretch": (("AU20", 1.0),),
    "MouthRollLower": (("AU23", 0.3),),
    "MouthShrugLower": (("AU17", 1.0),),
    "MouthShrugUpper": (("AU10", 0.3), ("AU17", 0.3)),
    "MouthPress": (("AU23", 0.8), ("AU17", 0.3)),
    "MouthLowerDown": (("AU25", 0.7), ("AU26", 0.3)),
    "MouthUpperUp": (("AU10", 1.0), ("AU09", 0.3)),
    "BrowDown": (("AU04", 1.1),),
    "BrowInnerUp": (("AU01", 1.1),),
    "BrowOuterUp": (("AU02", 1.0), ("AU01", 0.2)),
    "CheekSquint": (("AU06", 1.0),),
    "NoseSneer": (("AU09", 1.0), ("AU10", 0.3)),
}

# Expression events: the AUs they raise and each AU's share of the peak.
_EVENTS: tuple[tuple[str, dict[str, float]], ...] = (
    ("smile", {"AU06": 0.7, "AU12": 1.0, "AU25": 0.4, "AU14": 0.2}),
    ("surprise", {"AU01": 0.9, "AU02": 0.8, "AU05": 0.7, "AU25": 0.6, "AU26": 0.8}),
    ("frown", {"AU04": 1.0, "AU07": 0.6, "AU23": 0.5, "AU17": 0.4}),
    ("disgust", {"AU09": 1.0, "AU10": 0.8, "AU15": 0.4, "AU17": 0.3}),
    ("sadness", {"AU01": 0.8, "AU04": 0.5, "AU15": 0.9, "AU17": 0.3}),
    ("talk", {"AU25": 0.9, "AU26": 0.7, "AU20": 0.3, "AU14": 0.2}),
)
_AU_INDEX = {name: i for i, name in enumerate(ACTION_UNITS)}


def _mapping() -> dict[str, np.ndarray]:
    """The fixed AU -> blendshape mapping (independent of the data seed)."""
    rng = np.random.default_rng(MAPPING_SEED)
    B, A, R = NUM_BLENDSHAPES, NUM_AUS, len(ROTATIONS)
    weights = np.zeros((B, A))
    for j, name in enumerate(ARKIT_BLENDSHAPES):
        base = name.removesuffix("Left").removesuffix("Right")
        for au, w in ANCHORS.get(name, ANCHORS.get(base, ())):
            weights[j, _AU_INDEX[au]] = w * rng.uniform(0.85, 1.15)   # left and right differ a little
        extra = rng.choice(A, size=2, replace=False)                    # faint cross-talk
        weights[j, extra] += rng.uniform(0.0, 0.15, size=2)
    weights[-R:] = rng.normal(0.0, 0.6, size=(R, A)) * (rng.random((R, A)) < 0.3)   # rotations: signed, sparse
    pairs = np.stack([rng.choice(A, size=2, replace=False) for _ in range(B)])        # (B, 2)
    return {
        "weights": weights,                                             # (B, A)
        "pairs": pairs,                                                 # (B, 2) AU indices
        "pair_gain": rng.normal(0.0, 0.8, size=B),                      # (B,)
        "threshold": np.concatenate([rng.uniform(0.02, 0.1, size=B - R), np.zeros(R)]),   # (B,)
    }


def au_to_blendshapes(au: np.ndarray, *, delay: int = 2, mapping: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Noise-free blendshape weights (L, 61) of one AU sequence (L, 17), in [0, 1]."""
    m = _mapping() if mapping is None else mapping
    a = np.clip(au / AU_MAX, 0.0, 1.0)
    if delay > 0:  # the first frames see the first AU frame (the face at rest before the clip)
        a = np.concatenate([np.repeat(a[:1], delay, axis=0), a[:-delay]], axis=0)[: len(au)]
    z = a @ m["weights"].T + m["pair_gain"] * a[:, m["pairs"][:, 0]] * a[:, m["pairs"][:, 1]] - m["threshold"]   # (L, 61)
    R = len(ROTATIONS)
    out = np.empty_like(z)
    out[:, :-R] = np.tanh(1.5 * np.maximum(z[:, :-R], 0.0))
    out[:, -R:] = 0.5 + 0.5 * np.tanh(z[:, -R:])
    return out


def _raised_cosine(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * (np.arange(n) + 1) / (n + 1))


def _au_sequence(rng: np.random.Generator, length: int) -> np.ndarray:
    """One (length, 17) AU intensity sequence on the 0-5 scale."""
    t = np.arange(length) / FPS
    au = np.zeros((length, NUM_AUS))
    # slow background activity: a few low-frequency sinusoids per AU, rectified
    for _ in range(3):
        freq = rng.uniform(0.05, 0.5, size=NUM_AUS)
        phase = rng.uniform(0.0, 2.0 * np.pi, size=NUM_AUS)
        au += rng.uniform(0.0, 0.25, size=NUM_AUS) * np.sin(2.0 * np.pi * freq * t[:, None] + phase)
    au = np.maximum(au + rng.uniform(-0.1, 0.2, size=NUM_AUS), 0.0)
    # bursts: expression events, about one every 1.5 s
    for _ in range(rng.poisson(length / 45.0)):
        kind, shares = _EVENTS[rng.integers(len(_EVENTS))]
        duration = int(rng.integers(8, 45))
        start = int(rng.integers(-duration // 2, length))
        env = _raised_cosine(duration) * rng.uniform(1.0, 4.5)
        if kind == "talk":                                              # open-close cycles while talking
            env = env * (0.6 + 0.4 * np.sin(2.0 * np.pi * rng.uniform(3.0, 5.0) * np.arange(duration) / FPS))
        lo, hi = max(start, 0), min(start + duration, length)
        if hi <= lo:
            continue
        for name, share in shares.items():
            au[lo:hi, _AU_INDEX[name]] += share * rng.uniform(0.8, 1.2) * env[lo - start : hi - start]
    # blinks: short AU45 bursts, about one every 3 s
    for _ in range(rng.poisson(length / 90.0)):
        duration = int(rng.integers(4, 9))
        start = int(rng.integers(0, max(length - duration, 1)))
        seg = _raised_cosine(duration)[: length - start] * rng.uniform(3.0, 5.0)
        au[start : start + len(seg), _AU_INDEX["AU45"]] += seg
    au += rng.normal(0.0, 0.05, size=au.shape)                          # tracker jitter
    return np.clip(au, 0.0, AU_MAX)


def generate_au2blend(
    num_sequences: int = 300,
    min_length: int = 40,
    max_length: int = 200,
    delay: int = 2,
    noise: float = 0.02,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Deterministic synthetic set following :data:`SCHEMA` (same arguments, same bytes)."""
    if not 2 <= min_length <= max_length:
        raise ValueError(f"The value of `min_length` is {min_length}, but must be 2 <= min_length <= max_length ({max_length})")
    if delay < 0:
        raise ValueError(f"The value of `delay` is {delay}, but must be >= 0")
    rng = np.random.default_rng(seed)
    mapping = _mapping()
    au = np.zeros((num_sequences, max_length, NUM_AUS), dtype=np.float32)
    blend = np.zeros((num_sequences, max_length, NUM_BLENDSHAPES), dtype=np.float32)
    lengths = rng.integers(min_length, max_length + 1, size=num_sequences).astype(np.int64)
    for i, length in enumerate(lengths):
        x = _au_sequence(rng, int(length))
        y = au_to_blendshapes(x, delay=delay, mapping=mapping) + rng.normal(0.0, noise, size=(length, NUM_BLENDSHAPES))
        au[i, :length] = x
        blend[i, :length] = np.clip(y, 0.0, 1.0)
    return {"au": au, "blendshapes": blend, "lengths": lengths}


def check_au2blend_arrays(arrays: dict[str, np.ndarray], source: str) -> None:
    """Semantic checks the shape schema cannot express (padding frames are not checked)."""
    lengths, (N, T) = arrays["lengths"], arrays["au"].shape[:2]
    if N < 2:
        raise DataFileError(f"{source}: need at least 2 sequences (one for validation), found {N}")
    bad = np.flatnonzero((lengths < 2) | (lengths > T))
    if bad.size:
        raise DataFileError(f"{source}: dataset 'lengths' has {bad.size} values outside [2, {T}] (first at index {bad[0]}: {lengths[bad[0]]})")
    real = np.arange(T)[None] < lengths[:, None]                        # (N, T)
    weights = arrays["blendshapes"][real]                                # (frames, 61)
    if weights.size and (weights.min() < 0.0 or weights.max() > 1.0):
        raise DataFileError(f"{source}: dataset 'blendshapes' must lie in [0, 1] on real frames, found {weights.min():.4g}..{weights.max():.4g}")
