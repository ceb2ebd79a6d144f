"""The hand_action family: packed LSTM, attention pooling, PCA features, experiment."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from core.config import ConfigError
from core.data.hand import generate_hand_actions
from core.experiments.hand_action import HandActionConfig, HandActionExperiment, joint_features
from core.models.har_lstm import HarLSTM, HarLSTMConfig, masked_softmax
from core.training import run_epochs

TINY = dict(num_sequences=24, min_length=8, max_length=14, hidden_size=8, attention_dim=8, batch_size=8, max_epochs=2)


def tiny_config(**changes) -> HandActionConfig:
    return HandActionConfig(**{**TINY, **changes})


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    c = tiny_config()
    return generate_hand_actions(num_sequences=c.num_sequences, min_length=c.min_length, max_length=c.max_length,
                                 joint_noise_mm=c.joint_noise_mm, seed=c.data_seed)


@pytest.mark.parametrize("pooling", ["last", "attention"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_packing_equals_running_each_sequence_alone(pooling, num_layers):
    torch.manual_seed(0)
    model = HarLSTM(HarLSTMConfig(input_dim=5, num_classes=3, hidden_size=6, num_layers=num_layers, pooling=pooling, attention_dim=4)).eval()
    lengths = torch.tensor([7, 3, 5, 1])
    x = torch.randn(4, 7, 5)
    x[torch.arange(7)[None] >= lengths[:, None]] = 1e3              # garbage in the padding must not matter
    with torch.no_grad():
        logits = model(x, lengths)
        pooled, weights, steps = model.encode(x, lengths)
        for i, L in enumerate(lengths.tolist()):
            alone_logits = model(x[i : i + 1, :L], lengths[i : i + 1])
            alone_pooled, _, alone_steps = model.encode(x[i : i + 1, :L], lengths[i : i + 1])
            torch.testing.assert_close(logits[i], alone_logits[0], rtol=0, atol=1e-6)
            torch.testing.assert_close(pooled[i], alone_pooled[0], rtol=0, atol=1e-6)
            torch.testing.assert_close(steps[i, :L], alone_steps[0], rtol=0, atol=1e-6)
            # and the plain LSTM on the unpadded sequence agrees too
            out, (h, _) = model.lstm(x[i : i + 1, :L])
            torch.testing.assert_close(steps[i, :L], out[0], rtol=0, atol=1e-6)
            if pooling == "last":
                torch.testing.assert_close(pooled[i], h[-1, 0], rtol=0, atol=1e-6)
        assert (steps[torch.arange(7)[None] >= lengths[:, None]] == 0).all()


def test_attention_weights_sum_to_one_over_valid_frames():
    torch.manual_seed(1)
    model = HarLSTM(HarLSTMConfig(input_dim=4, num_classes=2, hidden_size=5, pooling="attention", attention_dim=3)).eval()
    lengths = torch.tensor([6, 2, 4])
    with torch.no_grad():
        pooled, weights, steps = model.encode(torch.randn(3, 6, 4), lengths)
    assert weights.shape == (3, 6)
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    assert (weights[torch.arange(6)[None] >= lengths[:, None]] == 0).all()
    assert (weights[torch.arange(6)[None] < lengths[:, None]] > 0).all()
    torch.testing.assert_close(pooled, (weights[..., None] * steps).sum(1))


def test_masked_softmax_hand_values():
    w = masked_softmax(torch.tensor([[0.0, math.log(3.0), 5.0], [1.0, 2.0, 3.0]]), torch.tensor([2, 3]))
    torch.testing.assert_close(w[0], torch.tensor([0.25, 0.75, 0.0]))
    torch.testing.assert_close(w[1], torch.softmax(torch.tensor([1.0, 2.0, 3.0]), 0))


def test_joint_features_are_centred(arrays):
    joints, lengths = torch.as_tensor(arrays["joints"]), torch.as_tensor(arrays["lengths"])
    f = joint_features(joints, lengths)
    assert f.shape == (24, 14, 63)
    for i, L in enumerate(lengths.tolist()):
        torch.testing.assert_close(f[i, :L, :3].mean(0), torch.zeros(3), rtol=0, atol=1e-5)   # the wrist, mean 0
        assert (f[i, L:] == 0).all()
        torch.testing.assert_close(f[i, :L].reshape(L, 21, 3) * 100.0 + (joints[i, :L, 0].mean(0)), joints[i, :L], rtol=0, atol=1e-3)


@pytest.mark.parametrize("changes", [dict(), dict(pooling="attention", pca_dim=6)])
def test_train_and_evaluate(arrays, changes):
    exp = HandActionExperiment(tiny_config(**changes), arrays)
    assert exp.features.shape[-1] == (changes.get("pca_dim") or 63)
    train = exp.train_epoch(0)
    metrics = exp.evaluate(0)
    assert set(train) == {"train_loss", "train_accuracy"} and set(metrics) == {"val_accuracy", "val_loss"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in {**train, **metrics}.values())
    assert 0.0 <= metrics["val_accuracy"] <= 1.0
    # accuracy is the share of val sequences whose argmax is the label (6 val sequences: multiples of 1/6)
    assert len(exp.val_idx) == 6 and (metrics["val_accuracy"] * 6) == pytest.approx(round(metrics["val_accuracy"] * 6))
    assert train["train_loss"] == pytest.approx(math.log(6), rel=0.2)       # chance level after one tiny epoch


def test_pca_features(arrays):
    exp = HandActionExperiment(tiny_config(pca_dim=6), arrays)
    comps = exp.pca_components
    torch.testing.assert_close(comps @ comps.T, torch.eye(6), rtol=0, atol=1e-5)
    valid = exp.valid
    torch.testing.assert_close(exp.features[valid], (exp.raw_features[valid] - exp.pca_mean) @ comps.T)
    assert (exp.features[~valid] == 0).all()
    # the PCA is fitted on training sequences only
    other = dict(arrays)
    other["joints"] = arrays["joints"].copy()
    other["joints"][exp.val_idx.numpy()] += 50.0
    assert torch.equal(HandActionExperiment(tiny_config(pca_dim=6), other).pca_components, comps)


def test_learns_to_separate_actions():
    data = generate_hand_actions(num_sequences=60, min_length=16, max_length=24, seed=0)
    exp = HandActionExperiment(HandActionConfig(num_sequences=60, min_length=16, max_length=24, hidden_size=32,
                                                pooling="attention", pca_dim=16, batch_size=16, lr=1e-2), data)
    history = run_epochs(exp, max_epochs=12)
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert max(h["train_accuracy"] for h in history) > 0.5


@pytest.mark.parametrize("changes", [dict(), dict(pooling="attention", pca_dim=4)])
def test_resume_matches_uninterrupted(arrays, changes):
    full = HandActionExperiment(tiny_config(**changes), arrays)
    run_epochs(full, max_epochs=1)
    buf = io.BytesIO()
    torch.save(full.state_dict(), buf)
    history_full = run_epochs(full, max_epochs=2, start_epoch=1)
    resumed = HandActionExperiment(tiny_config(**changes), arrays)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["config"] == dataclasses.asdict(full.config)
    assert ("pca_mean" in state) == ("pca_dim" in changes)
    resumed.load_state_dict(state)
    assert run_epochs(resumed, max_epochs=2, start_epoch=1) == history_full


@pytest.mark.parametrize(
    "changes, message",
    [(dict(pooling="mean"), "`pooling` is 'mean'"), (dict(pca_dim=64), "`pca_dim` is 64"),
     (dict(min_length=1), "`min_length` is 1"), (dict(hidden_size=0), "`hidden_size` is 0")],
)
def test_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**changes)

