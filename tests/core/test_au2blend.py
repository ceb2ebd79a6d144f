"""The au2blend family on a tiny synthetic set: data, config, metrics, determinism, checkpoints."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
import torch

from core.config import ConfigError
from core.data.au2blend import (
    ACTION_UNITS,
    AU_MAX,
    BLENDSHAPES,
    NUM_AUS,
    NUM_BLENDSHAPES,
    ROTATIONS,
    au_to_blendshapes,
    check_au2blend_arrays,
    generate_au2blend,
)
from core.data.hdf5 import DataFileError, write_hdf5
from core.experiments.au2blend import FAMILY, Au2BlendConfig, Au2BlendExperiment
from core.sequence import length_mask
from core.training import run_epochs

TINY = dict(num_sequences=12, min_length=6, max_length=20, hidden_size=8, attention_dim=4, batch_size=4, max_epochs=2)
METRIC_KEYS = {"val_mse", "val_r2", "val_negrelu", "val_neg_frac"}
TRAIN_KEYS = {"train_loss", "train_mse", "train_negrelu"}


def tiny_config(**changes) -> Au2BlendConfig:
    return Au2BlendConfig(**{**TINY, **changes})


@pytest.fixture(scope="module")
def arrays():
    c = tiny_config()
    return generate_au2blend(num_sequences=c.num_sequences, min_length=c.min_length, max_length=c.max_length, seed=c.data_seed)


def _train_one(arrays, **changes):
    exp = Au2BlendExperiment(tiny_config(**changes), arrays)
    train = exp.train_epoch(0)
    return exp, train, exp.evaluate(0)


@pytest.fixture(scope="module")
def trained(arrays):
    return _train_one(arrays)


# ---------------------------------------------------------------- data

def test_generator_shapes_ranges_and_padding():
    d = generate_au2blend(num_sequences=6, min_length=40, max_length=300, seed=1)   # "up to a few hundred frames"
    assert d["au"].shape == (6, 300, NUM_AUS) and d["blendshapes"].shape == (6, 300, NUM_BLENDSHAPES)
    assert d["au"].dtype == np.float32 and d["blendshapes"].dtype == np.float32 and d["lengths"].dtype == np.int64
    assert NUM_AUS == len(ACTION_UNITS) == 17 and NUM_BLENDSHAPES == len(BLENDSHAPES) == 61 and len(set(BLENDSHAPES)) == 61
    assert ((d["lengths"] >= 40) & (d["lengths"] <= 300)).all() and len(set(d["lengths"].tolist())) > 1
    real = length_mask(torch.as_tensor(d["lengths"]), 300).numpy()
    assert (d["au"][~real] == 0).all() and (d["blendshapes"][~real] == 0).all()
    au, bs = d["au"][real], d["blendshapes"][real]
    assert au.min() >= 0 and au.max() <= AU_MAX
    assert bs.min() >= 0 and bs.max() <= 1
    assert (bs[:, : NUM_BLENDSHAPES - len(ROTATIONS)] == 0).mean() > 0.1    # resting shapes: exact zeros
    assert au.max() > 3.0 and np.median(au) < 0.5                           # bursty: mostly low, some peaks
    check_au2blend_arrays(d, "generated")


def test_generator_deterministic():
    a = generate_au2blend(num_sequences=4, min_length=10, max_length=30, seed=5)
    b = generate_au2blend(num_sequences=4, min_length=10, max_length=30, seed=5)
    c = generate_au2blend(num_sequences=4, min_length=10, max_length=30, seed=6)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["au"], c["au"])


def test_mapping_is_fixed_delayed_and_nonlinear():
    rng = np.random.default_rng(0)
    au = rng.uniform(0, 5, size=(12, NUM_AUS))
    y2 = au_to_blendshapes(au, delay=2)
    y0 = au_to_blendshapes(au, delay=0)
    np.testing.assert_allclose(y2[2:], y0[:-2])                             # frame t follows AU frame t-2
    np.testing.assert_allclose(y2[:2], np.repeat(y0[:1], 2, axis=0))
    np.testing.assert_array_equal(au_to_blendshapes(au), y2)                # the same mapping on every call
    rest = au_to_blendshapes(np.zeros((3, NUM_AUS)), delay=0)
    R = len(ROTATIONS)
    assert (rest[:, :-R] == 0).all() and np.allclose(rest[:, -R:], 0.5)
    # the smile shapes follow AU12 and saturate: doubling AU12 does not double them
    smile = [BLENDSHAPES.index("MouthSmileLeft"), BLENDSHAPES.index("MouthSmileRight")]
    a = np.zeros((2, NUM_AUS))
    a[0, ACTION_UNITS.index("AU12")], a[1, ACTION_UNITS.index("AU12")] = 2.0, 4.0
    s = au_to_blendshapes(a, delay=0)[:, smile]
    assert (s[0] > 0.3).all() and (s[1] > s[0]).all() and (s[1] < 2 * s[0]).all()


def _write(tmp_path, arrays, name="data.h5"):
    path = tmp_path / name
    write_hdf5(path, arrays)
    return str(path)


def test_check_rejects_bad_files(tmp_path, arrays):
    c = tiny_config()
    bad = {k: v.copy() for k, v in arrays.items()}
    bad["lengths"][3] = 1
    with pytest.raises(DataFileError, match=r"bad\.h5: dataset 'lengths' has 1 values outside \[2, 20\]"):
        FAMILY.load_data(c, data_path=_write(tmp_path, bad, "bad.h5"), cache_dir=tmp_path)
    bad = {k: v.copy() for k, v in arrays.items()}
    bad["blendshapes"][0, 0, 5] = 1.5
    with pytest.raises(DataFileError, match=r"dataset 'blendshapes' must lie in \[0, 1\] on real frames"):
        FAMILY.load_data(c, data_path=_write(tmp_path, bad, "bad2.h5"), cache_dir=tmp_path)
    ok = {k: v.copy() for k, v in arrays.items()}                           # padding may hold anything
    n = int(ok["lengths"][0])
    ok["blendshapes"][0, n:] = -3.0
    loaded = FAMILY.load_data(c, data_path=_write(tmp_path, ok, "ok.h5"), cache_dir=tmp_path)
    assert loaded["blendshapes"][0, n:].min() == -3.0
    missing = {k: v for k, v in arrays.items() if k != "au"}
    with pytest.raises(DataFileError, match=r"missing dataset 'au'"):
        FAMILY.load_data(c, data_path=_write(tmp_path, missing, "missing.h5"), cache_dir=tmp_path)
    wrong = {**arrays, "blendshapes": arrays["blendshapes"][..., :52]}
    with pytest.raises(DataFileError, match=r"dataset 'blendshapes' has shape .*expected \(N, T, 61\)"):
        FAMILY.load_data(c, data_path=_write(tmp_path, wrong, "wrong.h5"), cache_dir=tmp_path)


# ---------------------------------------------------------------- config

@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(val_fraction=1.0), "`val_fraction` is 1.0, expected 0 < val_fraction < 1"),
        (dict(min_length=30, max_length=20), "`min_length` is 30, expected 2 <= min_length <= max_length"),
        (dict(dropout=1.0), "`dropout` is 1.0, expected 0 <= dropout < 1"),
        (dict(max_train_length=1), "`max_train_length` is 1, expected 0"),
        (dict(negrelu_weight=-0.1), "`negrelu_weight` is -0.1, expected >= 0"),
        (dict(hidden_size=0), "`hidden_size` is 0, expected >= 1"),
        (dict(lr=0.0), "`lr` is 0.0, expected > 0"),
        (dict(num_sequences=1), "`num_sequences` is 1, expected >= 2"),
    ],
)
def test_config_errors(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        tiny_config(**changes)


def test_build_refuses_a_wrongly_typed_value(arrays):
    with pytest.raises(ConfigError, match="`packed` is 'yes'"):
        FAMILY.build({**TINY, "packed": "yes"}, arrays)


# ---------------------------------------------------------------- experiment

def test_train_and_evaluate_metrics(trained):
    exp, train, metrics = trained
    assert set(train) == TRAIN_KEYS and set(metrics) == METRIC_KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in {**train, **metrics}.values())
    assert train["train_loss"] == pytest.approx(train["train_mse"])          # negrelu_weight 0
    assert metrics["val_mse"] > 0 and metrics["val_r2"] < 1
    assert 0 <= metrics["val_neg_frac"] <= 1 and metrics["val_negrelu"] >= 0


def test_metrics_match_a_direct_computation(trained):
    """val_mse / val_r2 are over the real frames of the validation split, by hand."""
    exp, _, metrics = trained
    pred, batch = exp.predict(exp.val_idx)
    p = pred[batch.mask].double().numpy()
    y = np.stack([exp.blendshapes[i, t].numpy() for i, n in zip(batch.index.tolist(), batch.lengths.tolist()) for t in range(n)])
    assert metrics["val_mse"] == pytest.approx(((p - y) ** 2).mean(), rel=1e-6)
    assert metrics["val_r2"] == pytest.approx(1 - ((p - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum(), rel=1e-6)
    assert metrics["val_neg_frac"] == pytest.approx((p < 0).mean())


def test_split(trained):
    exp = trained[0]
    val, tr = set(exp.val_idx.tolist()), set(exp.train_idx.tolist())
    assert len(val) == math.ceil(0.2 * 12) == 3 and len(tr) == 9
    assert not val & tr and val | tr == set(range(12))


def test_inputs_standardised_on_training_frames(trained, arrays):
    exp = trained[0]
    real = length_mask(exp.lengths[exp.train_idx], exp.au.shape[1])
    frames = exp.au[exp.train_idx][real]
    torch.testing.assert_close(frames.mean(0), torch.zeros(NUM_AUS), atol=1e-4, rtol=0)
    torch.testing.assert_close(frames.std(0), torch.ones(NUM_AUS), atol=1e-3, rtol=0)
    assert arrays["au"].min() >= 0                                          # the shared arrays are untouched


def test_padding_values_never_reach_masked_loss_or_metrics(arrays, trained):
    """Garbage in the padding frames of a file changes nothing with the masked
    loss; with ``mask_loss=False`` it changes the training (and so the model)."""
    _, train, metrics = trained
    garbage = {k: v.copy() for k, v in arrays.items()}
    pad = ~length_mask(torch.as_tensor(arrays["lengths"]), arrays["au"].shape[1]).numpy()
    garbage["blendshapes"][pad] = 0.9
    garbage["au"][pad] = 4.0
    exp, train_g, metrics_g = _train_one(garbage)
    assert train_g == train and metrics_g == metrics
    assert (exp.au[torch.as_tensor(pad)] == 0).all()                       # padded inputs are zeros
    _, train_u, metrics_u = _train_one(garbage, mask_loss=False)
    _, train_u_clean, _ = _train_one(arrays, mask_loss=False)
    assert train_u["train_mse"] > train_u_clean["train_mse"]                # 0.9 targets on padding frames
    assert metrics_u["val_mse"] != metrics["val_mse"]


def test_loss_is_mse_plus_weighted_negrelu(arrays):
    _, train, _ = _train_one(arrays, negrelu_weight=2.5)
    assert train["train_negrelu"] > 0
    assert train["train_loss"] == pytest.approx(train["train_mse"] + 2.5 * train["train_negrelu"], rel=1e-6)


def test_packing_does_not_change_the_plain_gru(arrays, trained):
    """Same batches, same weights: packed and padded plain GRUs agree on real frames."""
    _, train, metrics = trained
    _, train_p, metrics_p = _train_one(arrays, packed=True)
    assert train_p["train_loss"] == pytest.approx(train["train_loss"], rel=1e-4)
    assert metrics_p["val_mse"] == pytest.approx(metrics["val_mse"], rel=1e-4)


@pytest.mark.parametrize("changes", [dict(seq2seq=True), dict(seq2seq=True, attention=True, packed=True),
                                     dict(max_train_length=8, dropout=0.2)])
def test_variants_train(arrays, changes):
    exp, train, metrics = _train_one(arrays, **changes)
    assert set(metrics) == METRIC_KEYS
    assert all(math.isfinite(v) for v in {**train, **metrics}.values())
    assert (getattr(exp.model, "attention", None) is not None) == bool(changes.get("attention"))


def test_crop_windows(arrays):
    exp = Au2BlendExperiment(tiny_config(max_train_length=8), arrays)
    seen = []
    for epoch in (0, 1):
        batches = list(exp.train_batches(epoch))
        assert sum(len(b.index) for b in batches) == 9
        starts = []
        for b in batches:
            assert b.lengths.max() <= 8 and b.tensors["au"].shape[1] == b.lengths.max()
            for row, (i, n) in enumerate(zip(b.index.tolist(), b.lengths.tolist())):
                full = int(exp.lengths[i])
                assert n == min(full, 8)
                # the window is a contiguous piece of the sequence
                window = b.tensors["blendshapes"][row, :n]
                offsets = [s for s in range(full - n + 1) if torch.equal(exp.blendshapes[i, s : s + n], window)]
                assert offsets, (i, n)
                s = offsets[0]
                assert torch.equal(b.tensors["au"][row, :n], exp.au[i, s : s + n])   # inputs from the same frames
                starts.append((i, s))
        seen.append(sorted(starts))
    assert seen[0] != seen[1]                                               # a new window each epoch
    # the same epoch gives the same windows (seeded)
    first = [(b.index.tolist(), b.tensors["au"]) for b in exp.train_batches(0)]
    second = [(b.index.tolist(), b.tensors["au"]) for b in exp.train_batches(0)]
    assert all(a[0] == b[0] and torch.equal(a[1], b[1]) for a, b in zip(first, second))


@pytest.mark.parametrize("changes", [dict(dropout=0.2, max_train_length=8), dict(seq2seq=True, dropout=0.2)])
def test_resume_matches_uninterrupted(arrays, changes):
    full = Au2BlendExperiment(tiny_config(**changes), arrays)
    run_epochs(full, max_epochs=1)
    buf = io.BytesIO()
    torch.save(full.state_dict(), buf)
    history_full = run_epochs(full, max_epochs=2, start_epoch=1)
    resumed = Au2BlendExperiment(tiny_config(**changes), arrays)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert run_epochs(resumed, max_epochs=2, start_epoch=1) == history_full
    assert history_full[0]["epoch"] == 2
