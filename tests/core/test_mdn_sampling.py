"""The mdn_sampling family: sigma schedules, the emotion probe, the shared model,
and trials that only generate (running means, no training, resume)."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from core.config import ConfigError
from core.data.motion import generate_motion
from core.emotion_probe import EmotionProbe, emotion_consistency, sequence_windows
from core.experiments.base import random_split
from core.experiments.mdn_sampling import (
    FAMILY,
    MODEL_PREFIX,
    PROBE_PREFIX,
    SHARED_FIELDS,
    MdnSamplingConfig,
    MdnSamplingExperiment,
    shared_arrays,
)
from core.experiments.registry import get_family
from core.schedules import SIGMA_SHAPES, cosine_factor, sigma_divisor
from core.training import run_epochs

# --- sigma_divisor -----------------------------------------------------------

@pytest.mark.parametrize("shape, expected", [
    # steps = 5: t = 0, 0.25, 0.5, 0.75, 1 from start 100 to end 1
    ("constant", [100.0] * 5),
    ("linear", [100.0, 75.25, 50.5, 25.75, 1.0]),
    ("cosine", [100.0, 1 + 99 * 0.5 * (1 + math.cos(math.pi / 4)), 50.5, 1 + 99 * 0.5 * (1 - math.cos(math.pi / 4)), 1.0]),
])
def test_sigma_divisor_shapes_at_hand_computed_steps(shape, expected):
    assert [sigma_divisor(s, 5, start=100.0, end=1.0, shape=shape) for s in range(5)] == pytest.approx(expected)


def test_cosine_divisor_is_cosine_factor_and_stays_above_linear_early():
    assert SIGMA_SHAPES == ("constant", "linear", "cosine")
    for step in range(24):
        assert sigma_divisor(step, 24, start=100.0, end=1.0, shape="cosine") == cosine_factor(step, 24, start=100.0, end=1.0)
        if 0 < step < 11:   # the half-cosine lingers near its start: sharper than a line in the first half
            assert sigma_divisor(step, 24, start=100.0, end=1.0, shape="cosine") > sigma_divisor(step, 24, start=100.0, end=1.0, shape="linear")
    assert cosine_factor(0, 10) == 100.0 and cosine_factor(9, 10) == 1.0   # the old defaults still work


def test_sigma_divisor_refuses_bad_arguments():
    with pytest.raises(ValueError, match="`shape` is 'step'"):
        sigma_divisor(0, 5, start=1.0, end=1.0, shape="step")
    with pytest.raises(ValueError, match="`end` is 0.0"):
        sigma_divisor(0, 5, start=1.0, end=0.0, shape="linear")
    assert sigma_divisor(0, 1, start=7.0, end=2.0, shape="linear") == 2.0    # one step: the end, as cosine_factor


# --- the emotion probe ---------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    arrays = generate_motion(num_sequences=96, min_length=32, max_length=48, seed=3)
    kp, lengths = torch.as_tensor(arrays["keypoints"]), torch.as_tensor(arrays["lengths"])
    labels = torch.as_tensor(arrays["label"])
    train, val = random_split(96, 0.25, 0)
    windows, owner = sequence_windows(kp, lengths, train, 16, 8)
    probe = EmotionProbe.fit(windows, labels[owner], 0, groups=owner)
    val_windows, val_owner = sequence_windows(kp, lengths, val, 16, 4)
    return probe, val_windows, labels[val_owner]


def test_probe_separates_the_synthetic_emotions(real):
    probe, windows, labels = real
    assert probe.held_out_accuracy > 0.8
    assert float((probe.predict_proba(windows).argmax(1) == labels).double().mean()) > 0.8   # unseen sequences


def test_consistency_is_high_for_the_true_emotion_and_chance_for_shuffled_labels(real):
    probe, windows, labels = real
    assert emotion_consistency(probe, windows, labels) > 0.8
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    assert emotion_consistency(probe, windows, shuffled) == pytest.approx(0.25, abs=0.08)
    # probabilities: the four label shifts together account for every window exactly once
    total = sum(emotion_consistency(probe, windows, (labels + k) % 4) for k in range(4))
    assert total == pytest.approx(1.0, abs=1e-9)


def test_consistency_averages_every_window_of_a_longer_sequence(real):
    probe, windows, labels = real
    long = torch.cat([windows[:1], windows[:1, -4:]], dim=1)            # (1, 20, 17, 2): 5 windows of 16
    by_hand = np.mean([float(probe.predict_proba(long[:, s : s + 16])[0, labels[0]]) for s in range(5)])
    assert emotion_consistency(probe, long, labels[:1]) == pytest.approx(by_hand, rel=1e-12)
    with pytest.raises(ValueError, match="windows of 16"):
        emotion_consistency(probe, windows[:, :8], labels)


def test_probe_state_round_trip_and_determinism(real):
    probe, windows, labels = real
    again = EmotionProbe.from_state({k: v.copy() for k, v in probe.state_dict().items()})
    assert torch.equal(again.predict_proba(windows), probe.predict_proba(windows))
    assert again.held_out_accuracy == probe.held_out_accuracy and again.window == 16
    big_endian = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in probe.state_dict().items()}
    assert torch.equal(EmotionProbe.from_state(big_endian).predict_proba(windows), probe.predict_proba(windows))


# --- the shared model and the trials --------------------------------------------

def tiny(**changes) -> MdnSamplingConfig:
    return MdnSamplingConfig(**{**FAMILY.tiny, **changes})


@pytest.fixture(scope="module")
def data():
    c = tiny()
    return generate_motion(num_sequences=c.num_sequences, min_length=c.min_length, max_length=c.max_length, seed=c.data_seed)


@pytest.fixture(scope="module")
def shared(data):
    return shared_arrays(tiny(), data)


def build(data, shared, **changes) -> MdnSamplingExperiment:
    return MdnSamplingExperiment(tiny(**changes), {**data, **shared})


def test_the_family_is_registered_with_its_shared_part():
    family = get_family("mdn_sampling")
    assert family is FAMILY and family.shared is shared_arrays and family.shared_fields == SHARED_FIELDS
    fields = {f.name for f in dataclasses.fields(MdnSamplingConfig)}
    assert family.data_fields <= SHARED_FIELDS <= fields
    assert {"d_model", "n_components", "pretrain_epochs", "pretrain_seed", "probe_window", "val_fraction"} <= SHARED_FIELDS
    assert not {"sampling", "sigma_start", "sigma_end", "sigma_schedule", "seed", "max_epochs"} & SHARED_FIELDS
    assert get_family("mdn_motion").shared is None and get_family("mdn_motion").shared_fields == frozenset()


def test_shared_is_deterministic_and_depends_on_the_shared_fields_only(data, shared):
    assert any(k.startswith(MODEL_PREFIX) for k in shared) and any(k.startswith(PROBE_PREFIX) for k in shared)
    assert all(isinstance(v, np.ndarray) for v in shared.values())
    rng = torch.random.get_rng_state()
    again = shared_arrays(tiny(sampling="random", sigma_start=3.0, seed=5, gen_steps=12, contexts_per_epoch=1), data)
    assert torch.equal(torch.random.get_rng_state(), rng)           # torch's global stream left alone
    assert again.keys() == shared.keys()
    assert all(np.array_equal(again[k], shared[k]) for k in shared)
    other = shared_arrays(tiny(pretrain_seed=1), data)
    assert not np.array_equal(other[MODEL_PREFIX + "embed.weight"], shared[MODEL_PREFIX + "embed.weight"])


def test_a_trial_needs_the_shared_arrays(data):
    with pytest.raises(ConfigError, match="shared"):
        MdnSamplingExperiment(tiny(), data)


def test_a_trial_trains_nothing(data, shared):
    exp = build(data, shared)
    before = {k: v.clone() for k, v in exp.model.state_dict().items()}
    assert exp.train_epoch(0) == {}
    exp.evaluate(0)
    assert all(torch.equal(v, before[k]) for k, v in exp.model.state_dict().items())
    assert not any(p.requires_grad for p in exp.model.parameters())
    for k, v in before.items():
        np.testing.assert_array_equal(v.numpy(), shared[MODEL_PREFIX + k])   # the shared model, as trained


def test_most_probable_is_smoother_and_less_diverse_than_random(data, shared):
    """The notes' claim; on the tiny model (one pretraining epoch) jerk and diversity
    follow it, the emotion figure does not carry information (see the report)."""
    def last(**changes):
        return run_epochs(build(data, shared, **changes), max_epochs=2)[-1]

    most, rand = last(sampling="most_probable"), last(sampling="random", sigma_schedule="constant", sigma_start=1.0)
    assert most["gen_diversity"] == 0.0 < rand["gen_diversity"]
    assert most["gen_jerk_ratio"] < rand["gen_jerk_ratio"]
    # a huge constant divisor makes next_most_probable the most probable component's mean
    sharp = last(sampling="next_most_probable", sigma_schedule="constant", sigma_start=1e6)
    assert sharp["gen_diversity"] < 1e-4 * rand["gen_diversity"]
    assert sharp["gen_jerk_ratio"] == pytest.approx(most["gen_jerk_ratio"], rel=1e-3)
    # the schedule is used: cosine 100 -> 1 draws less spread than the model's own sigma throughout
    wide = last(sampling="next_most_probable", sigma_schedule="constant", sigma_start=1.0)
    cosine = last(sampling="next_most_probable", sigma_schedule="cosine", sigma_start=100.0, sigma_end=1.0)
    assert cosine["gen_diversity"] < wide["gen_diversity"]


def test_running_means_are_the_mean_of_the_epochs(data, shared):
    history = run_epochs(build(data, shared), max_epochs=3)
    for running in ("gen_jerk_ratio", "gen_diversity", "emotion_consistency", "real_emotion_consistency"):
        per_epoch = [m[f"epoch_{running}"] for m in history]
        assert len(set(per_epoch)) > 1 or running.endswith("consistency")   # new contexts each epoch
        for n in range(1, 4):
            assert history[n - 1][running] == pytest.approx(np.mean(per_epoch[:n]), rel=1e-12)
    assert [m["contexts_measured"] for m in history] == [2, 4, 6]
    assert all(m["probe_accuracy"] == float(shared[PROBE_PREFIX + "held_out_accuracy"]) for m in history)
    assert all(math.isfinite(m["pretrain_val_nll"]) for m in history)


def test_each_epoch_takes_new_contexts_and_cycles_through_the_validation_set(data, shared):
    exp = build(data, shared)
    seen = [exp.contexts(e, torch.Generator().manual_seed(e))[0].tolist() for e in range(2)]
    assert set(seen[0]).isdisjoint(seen[1])                          # 4 eligible sequences, 2 per epoch
    assert set(seen[0]) | set(seen[1]) == set(exp.cycle.tolist())
    assert exp.contexts(2, torch.Generator())[0].tolist() == seen[0]  # then round again


def test_evaluating_an_epoch_again_replaces_it(data, shared):
    exp = build(data, shared)
    first = exp.evaluate(0)
    assert exp.evaluate(0) == first
    assert exp.evaluate(1)["contexts_measured"] == 4


def _round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_a_resumed_trial_continues_its_running_means(data, shared):
    uninterrupted = run_epochs(build(data, shared), max_epochs=3)
    first = build(data, shared)
    run_epochs(first, max_epochs=2)
    state = _round_trip(first.state_dict())
    assert state["optimizer"] == {} and state["config"] == dataclasses.asdict(first.config)
    resumed = build(data, shared)
    resumed.load_state_dict(state)
    assert run_epochs(resumed, max_epochs=3, start_epoch=2) == uninterrupted[2:]
    fresh = run_epochs(build(data, shared), max_epochs=3, start_epoch=2)
    assert fresh[0]["gen_jerk_ratio"] != uninterrupted[2]["gen_jerk_ratio"]   # the state is what carried the means


@pytest.mark.parametrize("changes, message", [
    (dict(sampling="greedy"), "`sampling` is 'greedy'"),
    (dict(sigma_schedule="step"), "`sigma_schedule` is 'step'"),
    (dict(sigma_end=0.0), "`sigma_end` is 0.0"),
    (dict(gen_steps=6, probe_window=8), r"`gen_steps` \(6\) must be >= `probe_window` \(8\)"),
    (dict(gen_samples=1), "`gen_samples` is 1"),
])
def test_config_errors_name_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**changes)


def test_context_longer_than_the_data(data, shared):
    with pytest.raises(ConfigError, match="exceeds the data's 24 frames"):
        build(data, shared, gen_context=12, gen_steps=16, probe_window=8)
