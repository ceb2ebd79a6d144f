"""The cvae_video family: schedules, KL, PSNR, reparameterisation, data, experiment."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from core.config import ConfigError
from core.data.hdf5 import DataFileError, write_hdf5
from core.data.video import NUM_JOINTS, SCHEMA, check_video_arrays, generate_video, render_skeleton
from core.experiments.cvae_video import FAMILY, CvaeVideoConfig, CvaeVideoExperiment, psnr_metric_name
from core.metrics import psnr, psnr_per_frame
from core.models.cvae import CvaeConfig, CvaeVideo, gaussian_kl, reparameterize
from core.schedules import kl_beta, kl_beta_epochs, teacher_forcing_ratio
from core.training import run_epochs

TINY = dict(num_clips=12, clip_length=5, frame_size=16, width=4, z_channels=2, batch_size=4,
            max_epochs=2, val_fraction=0.25, val_batch_size=2)


# --- schedules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("epoch", [0, 0.5, 3, 7.25, 100])
def test_kl_beta_epochs_none_is_one(epoch):
    assert kl_beta_epochs(epoch, kind="none", cycle_epochs=4, ratio=0.5) == 1.0


@pytest.mark.parametrize(
    "epoch, expected",
    # cycle 4 epochs, ratio 0.5: rises over epochs [0, 2], then 1 for good
    [(0, 0.0), (0.5, 0.25), (1, 0.5), (1.5, 0.75), (2, 1.0), (3, 1.0), (4, 1.0), (5, 1.0), (13, 1.0)],
)
def test_kl_beta_epochs_monotonic(epoch, expected):
    assert kl_beta_epochs(epoch, kind="monotonic", cycle_epochs=4, ratio=0.5) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "epoch, expected",
    # cycle 4 epochs, ratio 0.5: 0 -> 1 over the first 2 epochs of every cycle
    [(0, 0.0), (1, 0.5), (2, 1.0), (3, 1.0), (3.99, 1.0), (4, 0.0), (5, 0.5), (6, 1.0), (8, 0.0), (9.5, 0.75)],
)
def test_kl_beta_epochs_cyclical(epoch, expected):
    assert kl_beta_epochs(epoch, kind="cyclical", cycle_epochs=4, ratio=0.5) == pytest.approx(expected, abs=1e-12)


def test_kl_beta_epochs_cycle_boundaries_are_exact():
    # a cycle of 3 epochs: epoch 6 starts the third cycle exactly (no 0.9999 from float error)
    assert kl_beta_epochs(6, kind="cyclical", cycle_epochs=3, ratio=1.0) == 0.0
    assert kl_beta_epochs(7.5, kind="cyclical", cycle_epochs=3, ratio=1.0) == pytest.approx(0.5)
    # ratio 1: never flat at 1 inside a cycle
    assert kl_beta_epochs(2.9, kind="cyclical", cycle_epochs=3, ratio=1.0) == pytest.approx(2.9 / 3)


def test_kl_beta_epochs_matches_kl_beta_over_a_budget():
    # 16 epochs with a 4-epoch cycle is kl_beta's 4 cycles over the budget
    for epoch in np.linspace(0, 15.9, 60):
        assert kl_beta_epochs(epoch, kind="cyclical", cycle_epochs=4, ratio=0.25) == pytest.approx(
            kl_beta(epoch / 16, kind="cyclical", cycles=4, ratio=0.25), abs=1e-9)
    # monotonic over the first cycle = kl_beta's monotonic with the cycle as the budget
    assert kl_beta_epochs(1.0, kind="monotonic", cycle_epochs=8, ratio=0.5) == pytest.approx(
        kl_beta(1.0 / 8, kind="monotonic", ratio=0.5))


@pytest.mark.parametrize("kwargs", [dict(kind="linear", cycle_epochs=4), dict(kind="cyclical", cycle_epochs=0),
                                    dict(kind="cyclical", cycle_epochs=4, ratio=1.5)])
def test_kl_beta_epochs_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match="The value of"):
        kl_beta_epochs(1.0, **kwargs)


@pytest.mark.parametrize(
    "epoch, expected",
    # tfr 1.0, decay starts at epoch 3, 0.2 per epoch, floor 0
    [(0, 1.0), (2, 1.0), (3, 1.0), (4, 0.8), (5, 0.6), (7, 0.2), (8, 0.0), (12, 0.0)],
)
def test_teacher_forcing_decay(epoch, expected):
    assert teacher_forcing_ratio(epoch, 1.0, 3, 0.2) == pytest.approx(expected, abs=1e-12)


def test_teacher_forcing_lower_bound_and_no_decay():
    assert teacher_forcing_ratio(10, 0.9, 0, 0.1, lower=0.25) == pytest.approx(0.25)
    assert teacher_forcing_ratio(2, 0.9, 0, 0.1, lower=0.25) == pytest.approx(0.7)
    assert teacher_forcing_ratio(50, 0.6, 0, 0.0) == 0.6          # no decay step: constant
    assert teacher_forcing_ratio(50, 0.0, 0, 0.3) == 0.0          # no teacher forcing at all
    assert teacher_forcing_ratio(5, 0.1, 0, 0.1, lower=0.3) == 0.1  # a tfr below the floor is kept
    with pytest.raises(ValueError, match="tfr"):
        teacher_forcing_ratio(0, 1.5, 0, 0.1)
    with pytest.raises(ValueError, match="tfr_d_step"):
        teacher_forcing_ratio(0, 1.0, 0, -0.1)


# --- KL, PSNR, reparameterisation --------------------------------------------------------------

def test_gaussian_kl_known_values():
    # KL(N(mu, s^2) || N(0, 1)) = log(1/s) + (s^2 + mu^2)/2 - 1/2 per dimension
    mu = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, -2.0]], dtype=torch.float64)
    sigma = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.5, 2.0]], dtype=torch.float64)
    got = gaussian_kl(mu, 2 * sigma.log())
    expected = [0.0, 0.5, sum(math.log(1 / s) + (s**2 + m**2) / 2 - 0.5 for m, s in [(0.5, 0.5), (-2.0, 2.0)])]
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_gaussian_kl_matches_torch_distributions_and_sums_spatial_axes():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), ref, rtol=1e-5, atol=1e-6)


def test_psnr_hand_computation():
    target = torch.zeros(1, 1, 2, 2)
    pred = torch.tensor([[[[0.1, 0.0], [0.0, 0.3]]]])
    mse = (0.1**2 + 0.3**2) / 4                               # 0.025
    assert float(psnr(pred, target)) == pytest.approx(10 * math.log10(1 / mse), rel=1e-6)   # 16.0206 dB
    assert float(psnr(pred, target)) == pytest.approx(16.0206, abs=1e-4)
    assert float(psnr(pred * 255, target, data_range=255.0)) == pytest.approx(10 * math.log10(255**2 / (mse * 255**2)), rel=1e-6)
    assert float(psnr(target, target)) == pytest.approx(100.0)   # floored MSE, not inf


def test_psnr_per_frame_averages_db_over_clips():
    target = torch.zeros(2, 3, 1, 2, 2)                       # 2 clips, 3 frames
    pred = target.clone()
    errors = [[0.1, 0.2, 0.3], [0.05, 0.2, 0.4]]              # constant error per image
    for b in range(2):
        for t in range(3):
            pred[b, t] = errors[b][t]
    curve = psnr_per_frame(pred, target)
    expected = [np.mean([10 * math.log10(1 / errors[b][t] ** 2) for b in range(2)]) for t in range(3)]
    assert curve.shape == (3,)
    np.testing.assert_allclose(curve.numpy(), expected, rtol=1e-5)


def test_reparameterize_shapes_statistics_and_gradients():
    mu = torch.full((2000, 2, 2, 2), 1.5, requires_grad=True)
    logvar = torch.full((2000, 2, 2, 2), math.log(0.25), requires_grad=True)
    z = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert z.shape == mu.shape
    assert float(z.detach().mean()) == pytest.approx(1.5, abs=0.02) and float(z.detach().std()) == pytest.approx(0.5, abs=0.02)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))                     # dz/dmu = 1
    eps = (z.detach() - 1.5) / 0.5
    torch.testing.assert_close(logvar.grad, 0.5 * 0.5 * eps)               # dz/dlogvar = sigma/2 * eps


def _model(**kw) -> CvaeVideo:
    torch.manual_seed(0)
    return CvaeVideo(CvaeConfig(**{"channels": 3, "pose_channels": 1, "width": 4, "z_channels": 2, **kw}))


def test_forward_clip_shapes_and_gradient_flow():
    m = _model()
    g = torch.Generator().manual_seed(1)
    frames, pose = torch.rand(3, 4, 3, 8, 8, generator=g), torch.rand(3, 4, 1, 8, 8, generator=g)
    pred, mu, logvar = m.forward_clip(frames, pose, torch.tensor([True, False, True]))
    assert pred.shape == (3, 3, 3, 8, 8)
    assert mu.shape == logvar.shape == (3, 3, 2, 2, 2)
    assert float(pred.detach().min()) >= 0.0 and float(pred.detach().max()) <= 1.0
    loss = (pred - frames[:, 1:]).pow(2).mean() + gaussian_kl(mu.flatten(0, 1), logvar.flatten(0, 1)).mean()
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # the zero-initialised output layer is the only one with a gradient at step 0 ...
    assert float(m.decoder.out.weight.grad.abs().sum()) > 0
    # ... and the posterior gets gradient from the KL and through z
    assert float(m.posterior.net[0][0].weight.grad.abs().sum()) > 0


def test_untrained_decoder_copies_previous_frame():
    m = _model()
    frames = torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.9 + 0.05
    pose = torch.rand(2, 3, 1, 8, 8)
    with torch.no_grad():
        pred, _, _ = m.forward_clip(frames, pose, torch.tensor([True, True]))
        free, _, _ = m.forward_clip(frames, pose, torch.tensor([False, False]))
    torch.testing.assert_close(pred, frames[:, :-1], atol=1e-5, rtol=1e-4)               # teacher forced: copies x_{t-1}
    torch.testing.assert_close(free, frames[:, :1].expand_as(free), atol=1e-5, rtol=1e-4)  # free running: copies x_0


def test_teacher_forcing_feeds_truth_and_free_running_feeds_predictions():
    """With a decoder that depends on its input, a teacher-forced clip's frame t
    is a function of the true x_{t-1}; a free-running clip's, of its own output."""
    m = _model()
    with torch.no_grad():
        m.decoder.out.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
    frames = torch.rand(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    pose = torch.rand(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(9)
    tf, _, _ = m.forward_clip(frames, pose, torch.tensor([True]))
    torch.manual_seed(9)
    fr, _, _ = m.forward_clip(frames, pose, torch.tensor([False]))
    torch.manual_seed(9)
    pose_feat, mu2, logvar2 = m.posterior_params(frames[0, 1:], pose[0, 1:])
    z = reparameterize(mu2, logvar2)
    with torch.no_grad():
        step2_tf = m.decode(frames[0, 1:2], tuple(f[1:2] for f in pose_feat), z[1:2])
        step2_fr = m.decode(fr[0, 0:1], tuple(f[1:2] for f in pose_feat), z[1:2])
    torch.testing.assert_close(tf[0, 1:2].detach(), step2_tf, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fr[0, 1:2].detach(), step2_fr, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(tf[0, 1], fr[0, 1], atol=1e-4)
    torch.testing.assert_close(tf[0, 0], fr[0, 0])      # step 1 is fed the true x_0 either way


def test_generate_feeds_predictions_back_with_prior_noise():
    m = _model()
    with torch.no_grad():
        m.decoder.out.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
    first = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    pose = torch.rand(2, 5, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    clip = m.generate(first, pose, generator=torch.Generator().manual_seed(8))
    assert clip.shape == (2, 5, 3, 8, 8) and torch.equal(clip[:, 0], first)
    again = m.generate(first, pose, generator=torch.Generator().manual_seed(8))
    assert torch.equal(clip, again)                                        # same noise, same clip
    other = m.generate(first, pose, generator=torch.Generator().manual_seed(99))
    assert not torch.allclose(clip[:, 1:], other[:, 1:])                   # z ~ N(0, I) matters
    # frame 2 is decoded from generated frame 1, with the prior draw of step 2
    g = torch.Generator().manual_seed(8)
    z1 = torch.randn(2, 2, 2, 2, generator=g)
    z2 = torch.randn(2, 2, 2, 2, generator=g)
    with torch.no_grad():
        f1 = m.decode(first, m.encode_pose(pose[:, 1]), z1)
        f2 = m.decode(f1, m.encode_pose(pose[:, 2]), z2)
    torch.testing.assert_close(clip[:, 2], f2)


# --- data ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def arrays():
    c = CvaeVideoConfig(**TINY)
    return generate_video(num_clips=c.num_clips, clip_length=c.clip_length, frame_size=c.frame_size,
                          channels=c.channels, noise=c.noise, seed=c.data_seed)


def test_generator_schema_and_determinism(arrays):
    assert arrays["frames"].shape == (12, 5, 3, 16, 16) and arrays["frames"].dtype == np.float32
    assert arrays["pose_maps"].shape == (12, 5, 1, 16, 16)
    assert arrays["keypoints"].shape == (12, 5, NUM_JOINTS, 2)
    assert 0.0 <= arrays["frames"].min() and arrays["frames"].max() <= 1.0
    again = generate_video(num_clips=12, clip_length=5, frame_size=16)
    for k in arrays:
        assert np.array_equal(arrays[k], again[k]), k
    other = generate_video(num_clips=12, clip_length=5, frame_size=16, seed=1)
    assert not np.array_equal(arrays["frames"], other["frames"])
    gray = generate_video(num_clips=2, clip_length=3, frame_size=8, channels=1)
    assert gray["frames"].shape == (2, 3, 1, 8, 8)


def test_render_skeleton_draws_the_segments():
    # a vertical "body": every joint on the centre line except the feet spread sideways
    kp = np.tile(np.linspace(0.2, 0.8, NUM_JOINTS)[None, :, None], (1, 1, 2))
    kp[..., 0] = 0.5
    maps = render_skeleton(kp, 32)
    assert maps.shape == (1, 32, 32)
    assert maps[0, 16, 16] > 0.7                 # on the line
    assert maps[0, 16, 2] == 0.0 and maps[0, 2, 2] == 0.0   # far from it


def test_data_needs_previous_frame_and_pose():
    """The property the family's question rests on: copying the previous frame
    beats any frame-independent guess (the background is the clip's own), and
    the figure moves, so copying is far from perfect (the pose matters)."""
    d = generate_video(num_clips=24, clip_length=6, frame_size=32, seed=3)
    frames = torch.as_tensor(d["frames"])
    copy = float(psnr(frames[:, :-1], frames[:, 1:]).mean())
    mean_frame = float(psnr(frames.mean(dim=(0, 1), keepdim=True).expand_as(frames), frames).mean())
    assert copy > mean_frame + 5.0
    assert copy < 30.0                                       # far below the 40 dB noise ceiling
    pose = torch.as_tensor(d["pose_maps"])
    changed = ((pose[:, 1:] - pose[:, :-1]).abs() > 0.25).float().mean()
    assert float(changed) > 0.02                             # limbs move between frames


def test_check_video_arrays_rejects_bad_data(arrays):
    check_video_arrays(arrays, "ok.h5")
    bad = {**arrays, "frames": arrays["frames"] * 2.0}
    with pytest.raises(DataFileError, match=r"bad\.h5: dataset 'frames' must lie in \[0, 1\]"):
        check_video_arrays(bad, "bad.h5")
    with pytest.raises(DataFileError, match="pose_maps"):
        check_video_arrays({**arrays, "pose_maps": arrays["pose_maps"][..., :8, :8]}, "bad.h5")
    with pytest.raises(DataFileError, match="at least 2 clips"):
        check_video_arrays({k: v[:1] for k, v in arrays.items()}, "bad.h5")
    with pytest.raises(DataFileError, match="multiples of 4"):
        check_video_arrays({**arrays, "frames": arrays["frames"][..., :14, :14],
                            "pose_maps": arrays["pose_maps"][..., :14, :14]}, "bad.h5")


def test_load_data_cache_and_user_file(tmp_path, arrays):
    c = CvaeVideoConfig(**TINY)
    loaded = FAMILY.load_data(c, data_path=None, cache_dir=tmp_path)
    assert set(loaded) == set(SCHEMA)
    assert np.array_equal(loaded["frames"], arrays["frames"])
    assert len(list(tmp_path.glob("video-*.h5"))) == 1
    user = tmp_path / "mine.h5"
    write_hdf5(user, {"frames": arrays["frames"][:4], "pose_maps": arrays["pose_maps"][:4]})
    assert FAMILY.load_data(c, data_path=str(user), cache_dir=tmp_path)["frames"].shape[0] == 4
    write_hdf5(user, {"frames": arrays["frames"][:4]})
    with pytest.raises(DataFileError, match="missing dataset 'pose_maps'"):
        FAMILY.load_data(c, data_path=str(user), cache_dir=tmp_path)


# --- config and experiment -----------------------------------------------------------------------

def test_config_defaults_and_validation():
    defaults = FAMILY.defaults()
    assert defaults["kl_anneal_type"] == "none" and defaults["tfr"] == 0.0 and "seed" in defaults and "max_epochs" in defaults
    for bad, match in [(dict(kl_anneal_type="linear"), "`kl_anneal_type` is 'linear'"),
                       (dict(kl_anneal_ratio=0.0), "`kl_anneal_ratio` is 0.0"),
                       (dict(kl_anneal_cycle=0.0), "`kl_anneal_cycle`"),
                       (dict(tfr=1.5), "`tfr` is 1.5"), (dict(tfr_d_step=-0.1), "`tfr_d_step`"),
                       (dict(frame_size=30), "`frame_size` is 30"), (dict(channels=2), "`channels` is 2"),
                       (dict(width=5), "`width` is 5"), (dict(fast_train_frames=1), "`fast_train_frames`")]:
        with pytest.raises(ConfigError, match=match):
            CvaeVideoConfig(**bad)
    with pytest.raises(ConfigError, match="unknown key"):
        FAMILY.build({"nope": 1}, {}, "cpu")


@pytest.fixture(scope="module")
def trained(arrays):
    exp = CvaeVideoExperiment(CvaeVideoConfig(**TINY, tfr=0.5), arrays)
    history = run_epochs(exp, max_epochs=2)
    return exp, history


def test_metrics_are_finite_scalars_with_the_psnr_curve(trained):
    exp, history = trained
    T = exp.frames.shape[1]
    names = [psnr_metric_name(k) for k in range(1, T)]
    assert names == ["val_psnr_frame_01", "val_psnr_frame_02", "val_psnr_frame_03", "val_psnr_frame_04"]
    for m in history:
        assert set(names) | {"val_psnr", "val_kl", "train_loss", "train_mse", "train_kl", "kl_beta", "tfr"} <= set(m)
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in m.values())
        assert m["val_psnr"] == pytest.approx(np.mean([m[n] for n in names]))
        assert 5.0 < m["val_psnr"] < 60.0


def test_val_psnr_is_the_generated_clips_psnr(arrays):
    exp = CvaeVideoExperiment(CvaeVideoConfig(**TINY), arrays)
    metrics = exp.evaluate(0)
    gen = torch.Generator().manual_seed(exp.config.seed * 7_919 + 0)
    frames, pose = exp.frames[exp.val_idx], exp.pose_maps[exp.val_idx]
    clips = torch.cat([exp.model.generate(frames[i : i + 2, 0], pose[i : i + 2], generator=gen) for i in range(0, len(frames), 2)])
    curve = psnr(clips[:, 1:], frames[:, 1:]).mean(0)
    assert metrics["val_psnr_frame_02"] == pytest.approx(float(curve[1]), rel=1e-5)
    assert metrics["val_psnr"] == pytest.approx(float(curve.mean()), rel=1e-5)


def test_schedules_reach_training(arrays):
    c = CvaeVideoConfig(**{**TINY, "max_epochs": 4, "batch_size": 5}, kl_anneal_type="cyclical", kl_anneal_cycle=2.0, kl_anneal_ratio=0.5,
                        tfr=1.0, tfr_sde=0, tfr_d_step=0.5, fast_train_epochs=1, fast_train_frames=3)
    exp = CvaeVideoExperiment(c, arrays)
    m0, m1, m2 = exp.train_epoch(0), exp.train_epoch(1), exp.train_epoch(2)
    # 9 training clips, 2 batches per epoch: beta at epoch 0 and 0.5 is 0 and 0.5 -> mean 0.25; epoch 1: 1 and 1
    assert m0["kl_beta"] == pytest.approx(0.25) and m1["kl_beta"] == pytest.approx(1.0)
    assert m2["kl_beta"] == pytest.approx(0.25)
    assert (m0["tfr"], m1["tfr"], m2["tfr"]) == (1.0, 0.5, 0.0)
    assert m0["teacher_forced_fraction"] == 1.0 and m2["teacher_forced_fraction"] == 0.0
    assert m0["train_frames"] == 3.0 and m1["train_frames"] == 5.0


def test_teacher_forcing_is_decided_per_clip(arrays):
    exp = CvaeVideoExperiment(CvaeVideoConfig(**{**TINY, "num_clips": 12, "batch_size": 9}, tfr=0.5), arrays)
    seen = []
    original = exp.model.forward_clip
    exp.model.forward_clip = lambda f, p, teacher, **kw: (seen.append(teacher.clone()), original(f, p, teacher, **kw))[1]
    exp.train_epoch(0)
    teacher = torch.cat(seen)
    assert teacher.dtype == torch.bool and len(teacher) == len(exp.train_idx)
    assert teacher.any() and not teacher.all()          # a mix within the epoch, one draw per clip


def test_same_seed_same_numbers_and_resume_from_checkpoint(arrays):
    a = run_epochs(CvaeVideoExperiment(CvaeVideoConfig(**TINY, tfr=0.5), arrays), max_epochs=2)
    b = run_epochs(CvaeVideoExperiment(CvaeVideoConfig(**TINY, tfr=0.5), arrays), max_epochs=2)
    assert a == b
    c = run_epochs(CvaeVideoExperiment(CvaeVideoConfig(**TINY, tfr=0.5, seed=1), arrays), max_epochs=2)
    assert a[-1]["val_psnr"] != c[-1]["val_psnr"]
    # stop after epoch 1, save, load into a fresh experiment, train epoch 2: same numbers
    first = CvaeVideoExperiment(CvaeVideoConfig(**TINY, tfr=0.5), arrays)
    run_epochs(first, max_epochs=1)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = CvaeVideoExperiment(CvaeVideoConfig(**TINY, tfr=0.5), arrays)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert run_epochs(resumed, max_epochs=2, start_epoch=1) == a[1:]


def test_training_improves_on_copying(arrays):
    """A few epochs of teacher-forced training beat the untrained model (which
    copies the first frame) on generated clips."""
    c = CvaeVideoConfig(**{**TINY, "num_clips": 12, "width": 8, "batch_size": 3, "lr": 3e-3}, tfr=1.0)
    exp = CvaeVideoExperiment(c, arrays)
    before = exp.evaluate(0)["val_psnr"]
    history = run_epochs(exp, max_epochs=6)
    assert history[-1]["train_mse"] < history[0]["train_mse"]
    assert history[-1]["val_psnr"] > before


def test_config_fields_cover_the_issue_knobs():
    names = {f.name for f in dataclasses.fields(CvaeVideoConfig)}
    assert {"kl_anneal_type", "kl_anneal_cycle", "kl_anneal_ratio", "tfr", "tfr_sde", "tfr_d_step",
            "fast_train_epochs", "fast_train_frames", "seed", "max_epochs"} <= names
