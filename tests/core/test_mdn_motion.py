"""The mdn_motion family on a tiny synthetic set: metrics, determinism, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from core.config import ConfigError, config_from_dict
from core.data.motion import generate_motion
from core.experiments.mdn_motion import MdnMotionConfig, MdnMotionExperiment
from core.metrics import masked_mean, mean_jerk, sample_diversity
from core.schedules import ramp_weight
from core.training import NonFiniteLossError, check_finite, run_epochs

TINY = dict(
    num_sequences=16, min_length=16, max_length=24, d_model=16, n_heads=2, dim_feedforward=16,
    n_layers=1, gen_contexts=2, gen_steps=4, gen_context=8, gen_samples=2, max_epochs=2, batch_size=8,
)
METRIC_KEYS = {"val_kp_mse", "val_emotion_mse", "val_nll", "val_mse", "gen_jerk", "gen_jerk_ratio", "gen_diversity"}


def tiny_config(**changes) -> MdnMotionConfig:
    return MdnMotionConfig(**{**TINY, **changes})


@pytest.fixture(scope="module")
def arrays():
    c = tiny_config()
    return generate_motion(num_sequences=c.num_sequences, min_length=c.min_length, max_length=c.max_length, seed=c.data_seed)


def _train_one(arrays, **changes):
    exp = MdnMotionExperiment(tiny_config(**changes), arrays)
    train = exp.train_epoch(0)
    return exp, train, exp.evaluate(0)


@pytest.fixture(scope="module")
def trained(arrays):
    return _train_one(arrays)


def test_train_and_evaluate_metrics(trained):
    exp, train, metrics = trained
    assert set(train) == {"train_loss", "mdn_weight"}
    assert math.isfinite(train["train_loss"])
    assert train["mdn_weight"] == pytest.approx(0.1)  # linear ramp at epoch 0
    assert set(metrics) == METRIC_KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert metrics["val_mse"] == metrics["val_kp_mse"] + metrics["val_emotion_mse"]
    assert metrics["val_kp_mse"] > 0 and metrics["val_emotion_mse"] > 0
    assert metrics["gen_jerk"] > 0 and metrics["gen_jerk_ratio"] > 0
    # next_most_probable with 2 samples: continuations differ, but not by much
    assert metrics["gen_diversity"] > 0


def test_split(trained):
    exp = trained[0]
    val, tr = set(exp.val_idx.tolist()), set(exp.train_idx.tolist())
    assert len(val) == math.ceil(0.2 * 16) == 4 and len(tr) == 12
    assert not val & tr and val | tr == set(range(16))


@pytest.mark.parametrize(
    "changes",
    [
        dict(ramp_shape="linear", initial_weight=0.1, ramp_start=0.0, ramp_length=0.5),
        dict(ramp_shape="exponential", initial_weight=0.01, ramp_start=0.25, ramp_length=0.5),
        dict(ramp_shape="step", initial_weight=0.2, ramp_start=0.5),
        dict(ramp_shape="constant"),
    ],
)
def test_mdn_weight_follows_ramp(arrays, changes):
    exp = MdnMotionExperiment(tiny_config(max_epochs=8, **changes), arrays)
    c = exp.config
    expected = [ramp_weight(e / 8, shape=c.ramp_shape, initial_weight=c.initial_weight,
                            ramp_start=c.ramp_start, ramp_length=c.ramp_length) for e in range(8)]
    assert [exp.mdn_weight(e) for e in range(8)] == pytest.approx(expected)


def test_mdn_weight_hand_values(arrays):
    exp = MdnMotionExperiment(tiny_config(max_epochs=8), arrays)  # linear, 0.1 -> 1 over the first half
    assert [exp.mdn_weight(e) for e in range(6)] == pytest.approx([0.1, 0.325, 0.55, 0.775, 1.0, 1.0])
    exp = MdnMotionExperiment(tiny_config(max_epochs=4, ramp_shape="exponential", initial_weight=0.04,
                                          ramp_start=0.0, ramp_length=0.5), arrays)
    assert [exp.mdn_weight(e) for e in range(4)] == pytest.approx([0.04, 0.2, 1.0, 1.0])


def test_generate_shape_and_determinism(trained):
    exp = trained[0]
    kp, emo = exp.keypoints[:3, :8], exp.emotion[:3, :8]
    for mode in ("next_most_probable", "random"):
        a = exp.generate(kp, emo, 5, mode=mode, generator=torch.Generator().manual_seed(0))
        b = exp.generate(kp, emo, 5, mode=mode, generator=torch.Generator().manual_seed(0))
        c = exp.generate(kp, emo, 5, mode=mode, generator=torch.Generator().manual_seed(1))
        assert a.shape == (3, 5, 34)
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
        assert torch.isfinite(a).all()
    m1 = exp.generate(kp, emo, 5, mode="most_probable")
    m2 = exp.generate(kp, emo, 5, mode="most_probable")
    assert m1.shape == (3, 5, 34) and torch.equal(m1, m2)
    # the first of 5 steps of next_most_probable uses sigma / 100 (cosine 100 -> 1): a draw
    # from the argmax component within a few sigma/100 of its mean; the last uses sigma / 1
    n = exp.generate(kp, emo, 5, mode="next_most_probable", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mixture, _ = exp.model(kp, emo)
    k = mixture.logits[:, -1].argmax(-1)
    sigma = mixture.log_sigma[torch.arange(3), -1, k].exp()          # (3, 34)
    z = (n[:, 0] - m1[:, 0]) / (sigma / 100.0)
    assert float(z.abs().max()) < 6.0
    assert float((n[:, 0] - m1[:, 0]).abs().max()) < float((sigma / 100.0).max()) * 6


def test_gen_context_too_long(arrays):
    with pytest.raises(ConfigError, match="exceeds the data's 24 frames"):
        MdnMotionExperiment(tiny_config(gen_context=20, gen_steps=5), arrays)


# ---------------------------------------------------------------- training loop

class FakeExperiment:
    def __init__(self, losses, val=None):
        self.losses, self.val, self.trained = losses, val or {}, []

    def train_epoch(self, epoch):
        self.trained.append(epoch)
        return {"train_loss": self.losses[epoch]}

    def evaluate(self, epoch):
        return {"val_mse": self.val.get(epoch, 1.0 / (epoch + 1))}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_run_epochs_history():
    exp = FakeExperiment([3.0, 2.0, 1.0])
    seen = []
    history = run_epochs(exp, max_epochs=3, on_epoch=lambda n, m: seen.append(n))
    assert history == [
        {"epoch": 1, "train_loss": 3.0, "val_mse": 1.0},
        {"epoch": 2, "train_loss": 2.0, "val_mse": 0.5},
        {"epoch": 3, "train_loss": 1.0, "val_mse": 1 / 3},
    ]
    assert seen == [1, 2, 3]


def test_run_epochs_start_and_early_stop():
    exp = FakeExperiment([3.0, 2.0, 1.0, 0.5])
    history = run_epochs(exp, max_epochs=4, start_epoch=1, on_epoch=lambda n, m: n == 3)
    assert exp.trained == [1, 2]
    assert [h["epoch"] for h in history] == [2, 3]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_run_epochs_non_finite_train_loss(bad):
    exp = FakeExperiment([1.0, bad, 0.5])
    with pytest.raises(NonFiniteLossError, match="train_loss=.* at epoch 2"):
        run_epochs(exp, max_epochs=3)
    assert exp.trained == [0, 1]


def test_run_epochs_non_finite_eval():
    exp = FakeExperiment([1.0, 1.0], val={0: float("nan")})
    with pytest.raises(NonFiniteLossError, match="val_mse=nan at epoch 1"):
        run_epochs(exp, max_epochs=2)
    assert issubclass(NonFiniteLossError, FloatingPointError)


def test_check_finite_ignores_non_floats():
    check_finite({"epoch": 3, "loss": 1.0, "name": "x"}, 3)


# ---------------------------------------------------------------- metrics

def test_masked_mean():
    values = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert float(masked_mean(values, mask)) == pytest.approx(2.0)
    per_dim = torch.stack([values, 2 * values], dim=-1)     # (B, T, 2)
    assert float(masked_mean(per_dim, mask)) == pytest.approx(3.0)
    assert float(masked_mean(values, torch.zeros_like(mask))) == 0.0


def test_mean_jerk_and_diversity():
    t = torch.arange(6, dtype=torch.float64)
    seq = torch.zeros(1, 6, 1, 2, dtype=torch.float64)
    seq[0, :, 0, 0] = t**3                                  # third difference is 6
    assert mean_jerk(seq) == pytest.approx(6.0)
    assert mean_jerk(seq, fps=2.0) == pytest.approx(48.0)
    assert math.isnan(mean_jerk(seq[:, :3]))
    samples = torch.zeros(3, 1, 2, 1, 2)
    samples[1, ..., 0] = 3.0
    samples[2, ..., 1] = 4.0
    # pairs: |0-1|=3, |0-2|=4, |1-2|=5
    assert sample_diversity(samples) == pytest.approx(4.0)
    assert sample_diversity(samples[:1]) == 0.0


# ---------------------------------------------------------------- config

def test_config_from_dict_coerces():
    c = config_from_dict(MdnMotionConfig, {"lr": 1, "d_model": 32.0, "ramp_shape": "step"})
    assert c.lr == 1.0 and isinstance(c.lr, float)
    assert c.d_model == 32 and isinstance(c.d_model, int)


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"learning_rate": 0.1}, "unknown key(s) ['learning_rate']"),
        ({"lr": "fast"}, "`lr` is 'fast' (str), expected float"),
        ({"lr": True}, "`lr` is True (bool)"),
        ({"d_model": 32.5}, "`d_model` is 32.5 (float), expected int"),
        ({"d_model": "32"}, "`d_model` is '32' (str)"),
        ({"n_layers": False}, "`n_layers` is False (bool)"),
        ({"ramp_shape": 3}, "`ramp_shape` is 3 (int), expected str"),
        ({"ramp_shape": "wiggly"}, "`ramp_shape` is 'wiggly'"),
        ({"sampling": "greedy"}, "`sampling` is 'greedy'"),
        ({"ramp_shape": "exponential", "initial_weight": 0.0}, "`initial_weight` is 0.0"),
        ({"val_fraction": 1.0}, "`val_fraction` is 1.0"),
        ({"d_model": 30, "n_heads": 4}, "`d_model` (30) must be divisible by `n_heads` (4)"),
        ({"max_epochs": 0}, "`max_epochs` is 0, expected >= 1"),
    ],
)
def test_config_errors(values, fragment):
    with pytest.raises(ConfigError) as info:
        config_from_dict(MdnMotionConfig, values)
    assert fragment in str(info.value)
