"""Hand pre-processing: COM, crops, exact normalisation round trips, consistent augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.data.hand import default_intrinsics, generate_hand_depth, render_depth
from core.data.hand_preprocess import (
    AUG_MODES,
    aug_parts,
    bbox_crops,
    center_of_mass,
    crop_depth,
    cube_crops,
    denormalise_joints,
    identity_augmentation,
    make_crops,
    normalise_joints,
    project,
    sample_augmentation,
    unproject,
)


@pytest.fixture(scope="module")
def clean() -> dict[str, torch.Tensor]:
    """Noise-free frames, so a joint's pixel is on the hand unless the geometry is wrong."""
    a = generate_hand_depth(num_sequences=12, frames_per_sequence=2, noise_mm=0.0, dropout=0.0, seed=5)
    return {"depth": torch.as_tensor(a["depth"], dtype=torch.float64), "joints": torch.as_tensor(a["joints"], dtype=torch.float64),
            "K": torch.as_tensor(a["intrinsics"], dtype=torch.float64)}


def test_project_unproject_round_trip():
    K = torch.tensor([70.0, 72.0, 31.2, 30.7], dtype=torch.float64)
    xyz = torch.tensor([[10.0, -20.0, 400.0], [-55.5, 31.0, 351.0]], dtype=torch.float64)
    uvd = project(xyz, K)
    assert uvd[0].tolist() == pytest.approx([70 * 10 / 400 + 31.2, 72 * -20 / 400 + 30.7, 400.0])
    torch.testing.assert_close(unproject(uvd, K), xyz, rtol=0, atol=1e-12)


def test_center_of_mass_of_a_sphere():
    K = default_intrinsics(64)
    img = torch.as_tensor(render_depth(np.array([[15.0, -10.0, 400.0]]), np.array([25.0]), K, 64, 64))[None]
    com = center_of_mass(img, torch.as_tensor(K))[0]
    # the visible cap of a sphere: centred on its axis, between the front (375) and the centre (400)
    assert abs(float(com[0]) - 15.0 * float(com[2]) / 400.0) < 1.0
    assert abs(float(com[1]) + 10.0 * float(com[2]) / 400.0) < 1.0
    assert 375.0 < float(com[2]) < 392.0


def test_com_ignores_clutter_behind_the_hand():
    K = default_intrinsics(64)
    hand = render_depth(np.array([[0.0, 0.0, 400.0]]), np.array([30.0]), K, 64, 64)
    clutter = render_depth(np.array([[150.0, 150.0, 800.0]]), np.array([120.0]), K, 64, 64)
    both = torch.as_tensor(np.where(hand > 0, hand, clutter))[None]
    alone = center_of_mass(torch.as_tensor(hand)[None], torch.as_tensor(K))[0]
    with_clutter = center_of_mass(both, torch.as_tensor(K), refine_size=250.0)[0]
    torch.testing.assert_close(with_clutter, alone, rtol=0, atol=1e-9)
    assert float(both[0][both[0] > 0].mean()) > 500.0                  # a plain mean would be dragged away
    # a forearm behind the wrist, within the near range, is what the refinement cube trims
    arm = render_depth(np.array([[0.0, 60.0 + 12.0 * k, 400.0 + 10.0 * k] for k in range(12)]), np.full(12, 22.0), K, 64, 64)
    with_arm = torch.as_tensor(np.where((hand > 0) & ((arm == 0) | (hand <= arm)), hand, arm))[None]
    once = center_of_mass(with_arm, torch.as_tensor(K), refine_size=200.0, iterations=0)[0]
    refined = center_of_mass(with_arm, torch.as_tensor(K), refine_size=200.0, iterations=3)[0]
    assert abs(float(refined[1])) < abs(float(once[1]))                 # pulled back towards the hand


@pytest.mark.parametrize("method", ["cube", "bbox"])
@pytest.mark.parametrize("mode", ["none", "rot+trans+scale"])
def test_normalise_denormalise_is_exact(clean, method, mode):
    """Crop -> normalise -> un-normalise returns the joints exactly (float64: to 1e-9 mm)."""
    crops = make_crops(clean["depth"], clean["K"], method=method, cube_size=250.0)
    aug = None if mode == "none" else sample_augmentation(len(crops), mode, torch.Generator().manual_seed(0), rotation_deg=90).double()
    n = normalise_joints(clean["joints"], crops, clean["K"], aug)
    back = denormalise_joints(n, crops, clean["K"], aug)
    torch.testing.assert_close(back, clean["joints"], rtol=0, atol=1e-9)
    # float32, the training precision: still far below a millimetre
    n32 = normalise_joints(clean["joints"].float(), crops.float(), clean["K"].float(), None if aug is None else aug.float())
    back32 = denormalise_joints(n32, crops.float(), clean["K"].float(), None if aug is None else aug.float())
    assert float((back32.double() - clean["joints"]).abs().max()) < 1e-3


def test_cube_normalisation_hand_values():
    K = torch.tensor([64.0, 64.0, 31.5, 31.5], dtype=torch.float64)
    com = torch.tensor([[0.0, 0.0, 400.0]], dtype=torch.float64)
    crops = cube_crops(com, 200.0, K)
    assert crops[0].tolist() == pytest.approx([31.5, 31.5, 64 * 100 / 400, 64 * 100 / 400, 400.0, 100.0])
    # a joint on the cube's right face at the COM depth is at n_u = 1; 100 mm behind the COM is n_d = 1
    joints = torch.tensor([[[100.0, 0.0, 400.0], [0.0, 0.0, 500.0], [0.0, -50.0, 400.0]]], dtype=torch.float64)
    n = normalise_joints(joints, crops, K)
    np.testing.assert_allclose(n[0].numpy(), [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -0.5, 0.0]], atol=1e-12)
    # rotation by 90 degrees maps u to v; scale 2 halves; translation shifts
    aug = torch.tensor([[math.pi / 2, 2.0, 0.1, 0.0, -0.2]], dtype=torch.float64)
    na = normalise_joints(joints, crops, K, aug)
    np.testing.assert_allclose(na[0].numpy(), [[-0.1, 0.5, 0.2], [-0.1, 0.0, 0.7], [0.25 - 0.1, 0.0, 0.2]], atol=1e-12)


def test_crop_values(clean):
    crops = make_crops(clean["depth"], clean["K"], method="cube", cube_size=250.0)
    img = crop_depth(clean["depth"], crops, 32)
    assert img.shape == (len(crops), 1, 32, 32)
    assert float(img.min()) >= -1.0 and float(img.max()) == 1.0
    hand = img < 1.0
    assert 0.1 < float(hand.double().mean()) < 0.7
    # the crop reads the source pixel nearest each output pixel: its normalised depth, exactly
    k, i, j = 0, 16, 16
    c = crops[k]
    u = ((2 * j + 1) / 32 - 1) * c[2] + c[0]
    v = ((2 * i + 1) / 32 - 1) * c[3] + c[1]
    d = clean["depth"][k, int(torch.round(v)), int(torch.round(u))]
    expected = 1.0 if d == 0 else float(((d - c[4]) / c[5]).clamp(-1, 1))
    assert float(img[k, 0, i, j]) == pytest.approx(expected)


def test_bbox_crop_contains_the_hand(clean):
    depth = clean["depth"]
    com = center_of_mass(depth, clean["K"])
    crops = bbox_crops(depth, com, 250.0, padding=0.0)
    assert torch.equal(crops[:, 2], crops[:, 3])                                 # square
    for k in range(len(depth)):
        v, u = torch.nonzero(depth[k] > 0, as_tuple=True)
        nu = (u - crops[k, 0]) / crops[k, 2]
        nv = (v - crops[k, 1]) / crops[k, 3]
        assert float(nu.abs().max()) <= 1.0 and float(nv.abs().max()) <= 1.0
        assert max(float(nu.abs().max()), float(nv.abs().max())) > 0.9          # and is tight
    padded = bbox_crops(depth, com, 250.0, padding=0.2)
    torch.testing.assert_close(padded[:, 2], crops[:, 2] * 1.2)


def joint_pixels(n: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised joints (B, J, 3) -> (column, row) of the crop pixel they fall in, (B, J, 2) long."""
    return torch.floor((n[..., :2] + 1.0) / 2.0 * size).long()


def _on_hand(img: torch.Tensor, n: torch.Tensor, size: int, uvd: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which joints sit on a hand pixel of the crop with the surface not behind them.
    Joints outside the crop or the source image cannot be checked."""
    px = joint_pixels(n, size)
    checkable = (px >= 0).all(-1) & (px < size).all(-1)
    checkable &= (uvd[..., 0] > -0.5) & (uvd[..., 0] < W - 0.5) & (uvd[..., 1] > -0.5) & (uvd[..., 1] < H - 0.5)
    pc = px.clamp(0, size - 1)
    value = img[torch.arange(len(n))[:, None], 0, pc[..., 1], pc[..., 0]]      # (B, J) normalised surface depth
    on = (value < 1.0) & (value <= n[..., 2] + 1e-9)
    return on, checkable


@pytest.mark.parametrize("mode", AUG_MODES)
@pytest.mark.parametrize("method", ["cube", "bbox"])
def test_augmentation_keeps_image_and_joints_consistent(clean, mode, method):
    """After augmentation, a joint's pixel still sits on the hand, and the
    surface there is not behind the joint (the joint lies inside the hand)."""
    size = 64
    crops = make_crops(clean["depth"], clean["K"], method=method, cube_size=250.0)
    gen = torch.Generator().manual_seed(1)
    aug = sample_augmentation(len(crops), mode, gen, rotation_deg=60.0, translation=0.15, scale_std=0.15).double()
    img = crop_depth(clean["depth"], crops, size, aug)
    n = normalise_joints(clean["joints"], crops, clean["K"], aug)
    on, checkable = _on_hand(img, n, size, project(clean["joints"], clean["K"]), 64, 64)
    assert checkable.double().mean() > 0.85
    assert on[checkable].double().mean() >= 0.99, f"{int((~on & checkable).sum())} joints off the hand"
    if mode != "none":
        # negative control: augmenting the image but not the joints breaks it
        n_plain = normalise_joints(clean["joints"], crops, clean["K"])
        on_bad, checkable_bad = _on_hand(img, n_plain, size, project(clean["joints"], clean["K"]), 64, 64)
        assert on_bad[checkable_bad].double().mean() < on[checkable].double().mean() - 0.02


def test_network_resolution_still_consistent(clean):
    crops = make_crops(clean["depth"], clean["K"], method="cube", cube_size=250.0)
    aug = sample_augmentation(len(crops), "rot+trans+scale", torch.Generator().manual_seed(2)).double()
    img = crop_depth(clean["depth"], crops, 32, aug)
    n = normalise_joints(clean["joints"], crops, clean["K"], aug)
    on, checkable = _on_hand(img, n, 32, project(clean["joints"], clean["K"]), 64, 64)
    assert on[checkable].double().mean() >= 0.97


def test_sample_augmentation():
    def draw(mode: str, seed: int = 0, **kw) -> torch.Tensor:
        return sample_augmentation(1000, mode, torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(draw("none"), identity_augmentation(1000))
    assert torch.equal(draw("rot+trans+scale"), draw("rot+trans+scale"))
    assert not torch.equal(draw("rot"), draw("rot", seed=1))
    rot = draw("rot", rotation_deg=30.0)
    assert torch.equal(rot[:, 1:], identity_augmentation(1000)[:, 1:])            # only the angle moves
    assert float(rot[:, 0].abs().max()) <= math.radians(30.0) + 1e-6
    assert float(rot[:, 0].abs().max()) > math.radians(25.0)
    trans = draw("trans", translation=0.1)
    assert torch.equal(trans[:, :2], identity_augmentation(1000)[:, :2])
    assert 0.08 < float(trans[:, 2:].std()) < 0.12
    scale = draw("scale", scale_std=0.1)
    assert float(scale[:, 1].min()) >= 0.7 - 1e-6 and float(scale[:, 1].max()) <= 1.3 + 1e-6 and 0.08 < float(scale[:, 1].std()) < 0.12
    half = draw("rot+trans+scale", fraction=0.5)
    untouched = (half == identity_augmentation(1000)).all(1).double().mean()
    assert 0.45 < float(untouched) < 0.55
    assert torch.equal(draw("rot", fraction=0.0), identity_augmentation(1000))
    assert aug_parts("rot+scale") == {"rot", "scale"} and aug_parts("none") == frozenset()
    with pytest.raises(ValueError, match="must be one of"):
        aug_parts("flip")
