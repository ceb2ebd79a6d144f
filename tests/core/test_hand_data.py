"""The synthetic hand: skeleton, sequences, renderer, HDF5 schemas and checks."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.hand import (
    ACTIONS,
    BONE_LENGTHS,
    BONES,
    FINGERS,
    JOINTS,
    NUM_JOINTS,
    SCHEMA,
    SEQUENCE_SCHEMA,
    check_hand_arrays,
    check_sequence_arrays,
    default_intrinsics,
    forward_kinematics,
    generate_hand_actions,
    generate_hand_depth,
    generate_hand_sequences,
    hand_spheres,
    render_depth,
    rotation_matrix,
)
from core.data.hdf5 import DataFileError, validate_arrays


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    return generate_hand_depth(num_sequences=6, frames_per_sequence=3, seed=0)


def test_skeleton_layout():
    assert NUM_JOINTS == 21 and len(JOINTS) == 21 and JOINTS[0] == "wrist"
    assert JOINTS[1:5] == ("thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip")
    assert JOINTS[17:21] == ("pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip")
    assert len(BONES) == 20
    # every finger base hangs off the wrist, every other joint off its predecessor
    assert [b for b in BONES if b[0] == 0] == [(0, 1), (0, 5), (0, 9), (0, 13), (0, 17)]


@pytest.mark.parametrize("scale", [0.85, 1.0, 1.15])
def test_bone_lengths_hold_in_any_pose(scale):
    rng = np.random.default_rng(0)
    flex, spread = rng.uniform(0, 1, size=(7, 5)), rng.uniform(0, 1, size=7)
    joints = forward_kinematics(flex, spread, scale)                          # (7, 21, 3)
    for f, finger in enumerate(FINGERS):
        for k, length in enumerate(BONE_LENGTHS[finger]):
            a, b = 1 + 4 * f + k, 2 + 4 * f + k
            np.testing.assert_allclose(np.linalg.norm(joints[:, b] - joints[:, a], axis=-1), length * scale, rtol=1e-12)
    # rigid motions keep them too
    R = rotation_matrix(0.3, -0.2, 0.5)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_flexion_curls_fingers_towards_the_palm():
    straight = forward_kinematics(np.zeros(5), 0.5)
    fist = forward_kinematics(np.ones(5), 0.5)
    # straight index: MCP, PIP, DIP, TIP collinear along the finger direction, in the palm plane (z = 0)
    idx = straight[5:9]
    d = np.diff(idx, axis=0)
    np.testing.assert_allclose(np.cross(d[0], d[1]), 0.0, atol=1e-9)
    np.testing.assert_allclose(idx[:, 2], 0.0, atol=1e-12)
    total = sum(BONE_LENGTHS["index"])
    assert np.linalg.norm(idx[3] - idx[0]) == pytest.approx(total)
    # a fist brings the tip in front of the palm (-z, the palm side) and back towards the wrist
    phi = np.deg2rad(np.cumsum([85.0, 100.0, 70.0]))                           # cumulative flexion at 1
    assert fist[8, 2] == pytest.approx(-sum(L * np.sin(p) for L, p in zip(BONE_LENGTHS["index"], phi)))
    assert fist[8, 2] < -15.0
    assert np.linalg.norm(fist[8] - fist[5]) < 0.6 * total


def test_sequences_are_deterministic_and_balanced():
    a = generate_hand_sequences(12, 20, 30, seed=3)
    b = generate_hand_sequences(12, 20, 30, seed=3)
    c = generate_hand_sequences(12, 20, 30, seed=4)
    assert all(np.array_equal(x.joints, y.joints) for x, y in zip(a, b))
    assert not np.array_equal(a[0].joints, c[0].joints)
    assert sorted(s.label for s in a) == sorted(list(range(len(ACTIONS))) * 2)
    for s in a:
        assert 20 <= len(s.joints) <= 30
        start, stop = s.active
        assert 0 <= start < stop <= len(s.joints) and stop - start >= 0.44 * len(s.joints)
        assert (s.joints[..., 2] > 250).all()                                   # in front of the camera


def test_idle_frames_look_alike_across_actions():
    """Outside the action segment every class is the same relaxed hand: the
    classifier has to find the segment. Per-sequence placement differs, so
    compare hand shape: fingertip-to-wrist distances over hand scale."""
    seqs = generate_hand_sequences(12, 40, 40, seed=1)

    def shape(j: np.ndarray, s: float) -> np.ndarray:
        return np.linalg.norm(j[[4, 8, 12, 16, 20]] - j[0], axis=-1) / s

    idle = [shape(s.joints[0], s.scale) for s in seqs if s.active[0] > 0]
    mid = [shape(s.joints[(s.active[0] + s.active[1]) // 2], s.scale) for s in seqs]
    assert np.std(idle, axis=0).max() < 0.5 * np.std(mid, axis=0).max()


def test_render_matches_brute_force_and_a_hand_value():
    K = default_intrinsics(63)                                                  # cx = cy = 31: a pixel centre
    centres = np.array([[0.0, 0.0, 400.0], [30.0, 10.0, 380.0], [-40.0, -20.0, 420.0]])
    radii = np.array([20.0, 12.0, 15.0])
    img = render_depth(centres, radii, K, 63, 63)
    assert img[31, 31] == pytest.approx(380.0)                                  # centre ray hits z_c - r
    u, v = np.meshgrid(np.arange(63), np.arange(63))
    d = np.stack([(u - K[2]) / K[0], (v - K[3]) / K[1], np.ones(u.shape)], -1).reshape(-1, 3)
    a = (d * d).sum(-1)[:, None]
    b = d @ centres.T
    disc = b * b - a * ((centres**2).sum(-1) - radii**2)
    t = np.where(disc >= 0, (b - np.sqrt(np.maximum(disc, 0))) / a, np.inf).min(1)
    ref = np.where(np.isfinite(t), t, 0.0).reshape(63, 63)
    np.testing.assert_allclose(img, ref, atol=1e-9)
    assert img[0, 0] == 0.0 and (img > 0).sum() > 50


def test_rendered_hand_covers_its_joints():
    seq = generate_hand_sequences(1, 10, 10, seed=0)[0]
    K = default_intrinsics(64)
    img = render_depth(*hand_spheres(seq.joints[5], seq.scale), K, 64, 64)
    j = seq.joints[5]
    u = np.round(K[0] * j[:, 0] / j[:, 2] + K[2]).astype(int)
    v = np.round(K[1] * j[:, 1] / j[:, 2] + K[3]).astype(int)
    assert (img[v, u] > 0).all()
    assert (img[v, u] <= j[:, 2] + 1e-6).all()                                  # the surface is in front of the joint


def test_depth_frames_schema_and_determinism(frames):
    dims = validate_arrays(frames, SCHEMA, "generated")
    assert dims == {"N": 18, "H": 64, "W": 64}
    np.testing.assert_allclose(frames["intrinsics"], [64.0, 64.0, 31.5, 31.5])
    again = generate_hand_depth(num_sequences=6, frames_per_sequence=3, seed=0)
    for k in frames:
        np.testing.assert_array_equal(frames[k], again[k])
    assert np.array_equal(np.bincount(frames["sequence"]), [3] * 6)
    hand = frames["depth"] > 0
    assert 0.05 < hand.mean() < 0.4
    assert (frames["depth"][hand] > 300).all() and (frames["depth"][~hand] == 0).all()
    check_hand_arrays(frames, "generated")


def test_noise_and_dropout():
    clean = generate_hand_depth(num_sequences=2, frames_per_sequence=2, noise_mm=0.0, dropout=0.0)
    noisy = generate_hand_depth(num_sequences=2, frames_per_sequence=2, noise_mm=2.0, dropout=0.05)
    np.testing.assert_array_equal(clean["joints"], noisy["joints"])
    both = (clean["depth"] > 0) & (noisy["depth"] > 0)
    diff = noisy["depth"][both] - clean["depth"][both]
    assert abs(diff.mean()) < 0.3 and 1.6 < diff.std() < 2.4
    holes = (clean["depth"] > 0) & (noisy["depth"] == 0)
    assert 0.03 < holes.sum() / (clean["depth"] > 0).sum() < 0.07
    assert ((clean["depth"] == 0) <= (noisy["depth"] == 0)).all()               # noise never adds hand pixels


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a["intrinsics"].__setitem__(0, 0.0), "fx, fy > 0"),
        (lambda a: a["depth"].__setitem__((0, 0, 0), -1.0), "negative values"),
        (lambda a: a["depth"].__setitem__(2, 0.0), "fewer than 16 hand pixels"),
        (lambda a: a["joints"].__setitem__((1, 3, 2), -5.0), "z > 0"),
        (lambda a: a["label"].__setitem__(0, -1), "'label' must be >= 0"),
        (lambda a: a["sequence"].__setitem__(slice(None), 0), "at least 2 distinct"),
    ],
)
def test_check_hand_arrays_rejects(frames, change, message):
    arrays = {k: v.copy() for k, v in frames.items()}
    change(arrays)
    with pytest.raises(DataFileError, match=message) as info:
        check_hand_arrays(arrays, "my.h5")
    assert str(info.value).startswith("my.h5: dataset '")


def test_action_sequences():
    arrays = generate_hand_actions(num_sequences=12, min_length=10, max_length=16, joint_noise_mm=2.0, seed=0)
    assert validate_arrays(arrays, SEQUENCE_SCHEMA, "generated") == {"N": 12, "T": 16}
    assert arrays["joints"].dtype == np.float32
    L = arrays["lengths"]
    assert ((L >= 10) & (L <= 16)).all()
    for i in range(12):
        assert (arrays["joints"][i, L[i]:] == 0).all() and (arrays["joints"][i, : L[i], :, 2] > 250).all()
    clean = generate_hand_sequences(12, 10, 16, seed=0)
    jitter = np.concatenate([arrays["joints"][i, : L[i]] - clean[i].joints for i in range(12)])
    assert 1.8 < jitter.std() < 2.2 and abs(jitter.mean()) < 0.1
    np.testing.assert_array_equal(arrays["label"], [s.label for s in clean])
    check_sequence_arrays(arrays, "generated")
    bad = {**arrays, "lengths": arrays["lengths"].copy()}
    bad["lengths"][3] = 17
    with pytest.raises(DataFileError, match="'lengths' has 1 values outside"):
        check_sequence_arrays(bad, "x.h5")
