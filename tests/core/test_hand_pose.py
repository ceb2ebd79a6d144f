"""The hand_pose family: PCA prior, FiLM placement, experiment, checkpoints, picture."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from core.config import ConfigError
from core.data.hand import SCHEMA, generate_hand_depth
from core.data.hand_preprocess import denormalise_joints
from core.data.hdf5 import DataFileError, write_hdf5
from core.experiments.hand_pose import (
    FAMILY,
    HandPoseConfig,
    HandPoseExperiment,
    save_prediction_grid,
    split_by_sequence,
)
from core.models.deep_prior import FILM_PLACEMENTS, DeepPrior, DeepPriorConfig, fit_pca, parse_film_blocks, pca_decode, pca_encode
from core.training import run_epochs

TINY = dict(num_sequences=8, frames_per_sequence=4, channels=4, hidden=16, pca_dim=8, batch_size=8, max_epochs=2,
            val_fraction=0.25)
METRIC_KEYS = {"val_error_mm", "val_loss", "val_max_error_mm", "val_frames_within_40mm", "val_pca_floor_mm"}


def tiny_config(**changes) -> HandPoseConfig:
    return HandPoseConfig(**{**TINY, **changes})


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    c = tiny_config()
    return generate_hand_depth(num_sequences=c.num_sequences, frames_per_sequence=c.frames_per_sequence, seed=c.data_seed)


def _train_one(arrays, **changes):
    exp = HandPoseExperiment(tiny_config(**changes), arrays)
    train = exp.train_epoch(0)
    return exp, train, exp.evaluate(0)


@pytest.fixture(scope="module")
def trained(arrays):
    return _train_one(arrays)


# ---- PCA prior -----------------------------------------------------------------
def test_pca_round_trip():
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(63, 5, generator=gen, dtype=torch.float64))[0].T      # (5, 63) orthonormal
    offset = torch.randn(63, generator=gen, dtype=torch.float64)
    poses = torch.randn(200, 5, generator=gen, dtype=torch.float64) * torch.tensor([5.0, 4, 3, 2, 1], dtype=torch.float64) @ basis + offset
    mean, comps = fit_pca(poses, 5)
    assert comps.shape == (5, 63)
    torch.testing.assert_close(comps @ comps.T, torch.eye(5, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(mean, poses.mean(0))
    # data in a 5-dim affine subspace: 5 components reconstruct it exactly
    torch.testing.assert_close(pca_decode(pca_encode(poses, mean, comps), mean, comps), poses, rtol=0, atol=1e-9)
    # fewer components lose exactly the variance of the dropped directions, largest first
    mean3, comps3 = fit_pca(poses, 3)
    residual = poses - pca_decode(pca_encode(poses, mean3, comps3), mean3, comps3)
    coeff = pca_encode(poses, mean, comps)
    assert float(residual.pow(2).sum()) == pytest.approx(float(coeff[:, 3:].pow(2).sum()), rel=1e-9)
    assert (coeff.var(0)[:-1] >= coeff.var(0)[1:]).all()
    # any data round-trips through the full basis
    full = torch.randn(80, 63, generator=gen, dtype=torch.float64)
    m, c = fit_pca(full, 63)
    torch.testing.assert_close(pca_decode(pca_encode(full, m, c), m, c), full, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="must be 1 <= dim"):
        fit_pca(full, 64)


def test_model_output_lies_in_the_pca_span():
    model = DeepPrior(DeepPriorConfig(input_size=16, channels=2, hidden=8, pca_dim=4, num_joints=21)).eval()
    mean, comps = fit_pca(torch.randn(50, 63, generator=torch.Generator().manual_seed(1)), 4)
    model.set_pca(mean, comps)
    pose = model(torch.randn(3, 1, 16, 16))
    assert pose.shape == (3, 21, 3)
    flat = pose.flatten(1).detach()
    torch.testing.assert_close(pca_decode(pca_encode(flat, mean, comps), mean, comps), flat, rtol=0, atol=1e-5)
    assert "pca_mean" in model.state_dict() and not any(p is model.pca_components for p in model.parameters())


# ---- FiLM placement ---------------------------------------------------------------
@pytest.mark.parametrize("placement", FILM_PLACEMENTS)
def test_film_changes_the_output_only_where_placed(placement):
    torch.manual_seed(0)
    blocks = parse_film_blocks(placement)
    model = DeepPrior(DeepPriorConfig(input_size=16, channels=4, hidden=8, pca_dim=6, num_actions=4, film_blocks=placement, film_dim=4)).eval()
    for i, block in enumerate(model.blocks):
        assert block.bn.affine == (i not in blocks)              # BatchNorm followed by FiLM has no affine
        assert (block.film is not None) == (i in blocks)
    x = torch.randn(1, 1, 16, 16).repeat(2, 1, 1, 1)                # the same image twice, two labels
    with torch.no_grad():
        pose, feats = model(x, torch.tensor([0, 3]), return_features=True)
    first = min(blocks) if blocks else len(feats)
    for i, f in enumerate(feats):
        if i < first:
            assert torch.equal(f[0], f[1]), f"block {i} depends on the label before any FiLM"
        else:
            assert not torch.allclose(f[0], f[1]), f"block {i} ignores the label after FiLM at {first}"
        if i in blocks:
            # the placed block itself changes the label dependence: compare with the block without its FiLM
            with torch.no_grad():
                h_in = feats[i - 1] if i else x
                bare = model.blocks[i].pool(torch.relu(model.blocks[i].bn(model.blocks[i].conv(h_in))))
            assert not torch.allclose(bare[0], f[0]) or not torch.allclose(bare[1], f[1])
    assert torch.equal(pose[0], pose[1]) == (not blocks)


def test_parse_film_blocks():
    assert parse_film_blocks("none") == () and parse_film_blocks("2,0") == (0, 2)
    for bad in ("3", "a", "", "0;1", "-1"):
        with pytest.raises(ValueError):
            parse_film_blocks(bad)
    with pytest.raises(ConfigError, match="`film_blocks` is '0,3'"):
        HandPoseConfig(film_blocks="0,3")


# ---- experiment --------------------------------------------------------------------
def test_train_and_evaluate_metrics(trained):
    exp, train, metrics = trained
    assert set(train) == {"train_loss"} and math.isfinite(train["train_loss"]) and train["train_loss"] > 0
    assert set(metrics) == METRIC_KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert 1.0 < metrics["val_error_mm"] < 200.0
    assert metrics["val_max_error_mm"] >= metrics["val_error_mm"]
    assert 0.0 <= metrics["val_frames_within_40mm"] <= 1.0
    assert 0.0 < metrics["val_pca_floor_mm"] < metrics["val_error_mm"]


def test_val_error_is_the_mean_joint_distance_in_mm(trained):
    exp = trained[0]
    pred = exp.predict(exp.val_images, exp.labels[exp.val_idx])
    mm = denormalise_joints(pred, exp.crops[exp.val_idx], exp.intrinsics)
    expected = np.linalg.norm(mm.numpy() - np.asarray(exp.joints[exp.val_idx]), axis=-1).mean()
    assert exp.evaluate(0)["val_error_mm"] == pytest.approx(float(expected), rel=1e-5)


def test_split_keeps_sequences_whole(arrays):
    train, val = split_by_sequence(arrays["sequence"], 0.25, 0)
    assert len(set(train) | set(val)) == len(arrays["sequence"]) and not set(train) & set(val)
    assert not set(arrays["sequence"][train]) & set(arrays["sequence"][val])
    assert len(set(arrays["sequence"][val])) == 2


def test_augmentation_random_vs_fixed(arrays):
    random = HandPoseExperiment(tiny_config(train_aug="rot+trans", aug_random=True), arrays)
    fixed = HandPoseExperiment(tiny_config(train_aug="rot+trans", aug_random=False), arrays)
    g = lambda e: torch.Generator().manual_seed(e)  # noqa: E731
    a0, a1 = random._training_set(g(0)), random._training_set(g(1))
    assert not torch.equal(a0[1], a1[1])                                     # new draws every epoch
    assert fixed._fixed_train is not None and random._fixed_train is None
    plain = HandPoseExperiment(tiny_config(), arrays)._fixed_train
    moved = (fixed._fixed_train[1] - plain[1]).abs().flatten(1).amax(1) > 1e-6
    assert 0.3 < float(moved.float().mean()) < 0.7                           # aug_fraction 0.5 of the frames


def test_pca_fitted_on_augmented_poses(arrays):
    plain = HandPoseExperiment(tiny_config(), arrays)
    aug = HandPoseExperiment(tiny_config(pca_aug="rot", pca_aug_copies=3), arrays)
    assert len(aug._pca_poses()) == 4 * len(plain._pca_poses())
    assert not torch.allclose(aug.model.pca_components, plain.model.pca_components)
    # rotated copies are spread further in the image plane: the prior spans them better than the plain one
    rotated = aug._pca_poses()[len(plain._pca_poses()):].flatten(1)

    def residual(exp):
        m, c = exp.model.pca_mean, exp.model.pca_components
        return float((pca_decode(pca_encode(rotated, m, c), m, c) - rotated).pow(2).mean())

    assert residual(aug) < residual(plain)


def test_state_dict_round_trip_restores_the_prior(arrays, trained):
    exp, _, metrics = trained
    buf = io.BytesIO()
    torch.save(exp.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["config"] == dataclasses.asdict(exp.config)
    torch.testing.assert_close(state["pca_components"], exp.model.pca_components)
    fresh = HandPoseExperiment(tiny_config(), arrays)
    fresh.model.set_pca(torch.zeros_like(fresh.model.pca_mean), torch.zeros_like(fresh.model.pca_components))
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.model.pca_mean, exp.model.pca_mean)
    assert fresh.evaluate(0) == exp.evaluate(0) == metrics
    model = DeepPrior(DeepPriorConfig(**state["model_args"]))
    model.load_state_dict(state["model"])


@pytest.mark.parametrize("changes", [dict(), dict(train_aug="rot+scale", film_blocks="1")])
def test_resume_matches_uninterrupted(arrays, changes):
    full = HandPoseExperiment(tiny_config(**changes), arrays)
    run_epochs(full, max_epochs=1)
    buf = io.BytesIO()
    torch.save(full.state_dict(), buf)
    history_full = run_epochs(full, max_epochs=2, start_epoch=1)
    resumed = HandPoseExperiment(tiny_config(**changes), arrays)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert run_epochs(resumed, max_epochs=2, start_epoch=1) == history_full


def test_bbox_crop_and_film_train(arrays):
    for changes in (dict(crop_method="bbox", bbox_padding=0.3), dict(film_blocks="0,1,2", film_dim=3)):
        _, train, metrics = _train_one(arrays, **changes)
        assert math.isfinite(train["train_loss"]) and math.isfinite(metrics["val_error_mm"])


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(crop_method="sphere"), "`crop_method` is 'sphere'"),
        (dict(train_aug="flip"), "`train_aug` is 'flip'"),
        (dict(pca_aug="rot+flip"), "`pca_aug` is 'rot\\+flip'"),
        (dict(pca_dim=64), "`pca_dim` is 64"),
        (dict(input_size=20), "`input_size` is 20"),
        (dict(cube_size=0.0), "`cube_size` is 0.0"),
        (dict(aug_fraction=1.5), "`aug_fraction` is 1.5"),
    ],
)
def test_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**changes)


def test_load_data_cache_and_user_file(tmp_path, arrays):
    c = tiny_config()
    loaded = FAMILY.load_data(c, data_path=None, cache_dir=tmp_path)
    for k, v in arrays.items():
        np.testing.assert_array_equal(loaded[k], v)
    FAMILY.load_data(c, data_path=None, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("hand_depth-*.h5"))) == 1
    # a converted real data set: uint16 depth and int32 labels load like the synthetic one
    user = {**arrays, "depth": np.round(arrays["depth"]).astype(np.uint16).astype(np.float32), "label": arrays["label"].astype(np.int32)}
    write_hdf5(tmp_path / "mine.h5", user)
    assert FAMILY.load_data(c, data_path=str(tmp_path / "mine.h5"), cache_dir=tmp_path)["depth"].shape == arrays["depth"].shape
    broken = {k: v for k, v in user.items() if k != "intrinsics"}
    write_hdf5(tmp_path / "broken.h5", broken)
    with pytest.raises(DataFileError, match="broken.h5: missing dataset 'intrinsics'"):
        FAMILY.load_data(c, data_path=str(tmp_path / "broken.h5"), cache_dir=tmp_path)
    assert set(SCHEMA) == {"depth", "joints", "label", "sequence", "intrinsics"}


def test_save_prediction_grid(tmp_path, trained):
    path = save_prediction_grid(trained[0], tmp_path / "grid" / "pred.png", n=4)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
