"""MDN head, loss and sampling against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.models.mdn import SAMPLING_MODES, MDNHead, MixtureParams, mdn_nll, sample_mdn

LOGITS = [0.3, -0.5]
MU = [[0.1, -0.2], [1.0, 0.5]]
LOG_SIGMA = [[-0.3, 0.2], [0.1, -0.7]]


def _params(dtype=torch.float64) -> MixtureParams:
    return MixtureParams(
        torch.tensor(LOGITS, dtype=dtype),
        torch.tensor(MU, dtype=dtype),
        torch.tensor(LOG_SIGMA, dtype=dtype),
    )


def _reference_nll(y, logits=LOGITS, mu=MU, log_sigma=LOG_SIGMA) -> float:
    w = np.exp(logits) / np.exp(logits).sum()
    total = 0.0
    for k in range(len(logits)):
        density = 1.0
        for d in range(len(y)):
            sigma = math.exp(log_sigma[k][d])
            density *= math.exp(-0.5 * ((y[d] - mu[k][d]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        total += w[k] * density
    return -math.log(total) / len(y)


@pytest.mark.parametrize("y", [[0.0, 0.0], [0.1, -0.2], [1.0, 0.5], [0.6, 0.1], [-1.5, 2.0]])
def test_mdn_nll_matches_hand_computation(y):
    got = mdn_nll(_params(), torch.tensor(y, dtype=torch.float64))
    assert got.shape == ()
    assert float(got) == pytest.approx(_reference_nll(y), rel=1e-10, abs=1e-12)


def test_mdn_nll_batched_shape_and_values():
    ys = [[0.0, 0.0], [1.0, 0.5], [0.6, 0.1]]
    p = _params()
    batched = MixtureParams(p.logits.expand(3, 2), p.mu.expand(3, 2, 2), p.log_sigma.expand(3, 2, 2))
    got = mdn_nll(batched, torch.tensor(ys, dtype=torch.float64))
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), [_reference_nll(y) for y in ys], rtol=1e-10)


def test_mdn_nll_single_component_is_gaussian():
    # K=1, D=1, standard normal at y=0: NLL = 0.5 log(2 pi)
    p = MixtureParams(torch.zeros(1), torch.zeros(1, 1), torch.zeros(1, 1))
    assert float(mdn_nll(p, torch.zeros(1))) == pytest.approx(0.5 * math.log(2 * math.pi), rel=1e-6)


def test_mdn_nll_is_stable_far_from_every_component():
    p = _params()
    y = torch.tensor([200.0, -300.0], dtype=torch.float64)
    value = float(mdn_nll(p, y))
    assert math.isfinite(value) and value > 1e3


def test_mixture_mean():
    p = _params()
    w = np.exp(LOGITS) / np.exp(LOGITS).sum()
    expected = w[0] * np.array(MU[0]) + w[1] * np.array(MU[1])
    np.testing.assert_allclose(p.mean().numpy(), expected, rtol=1e-12)


def test_mdn_head_shapes_and_clamp():
    torch.manual_seed(0)
    head = MDNHead(8, 3, 4, min_log_sigma=-1.0, max_log_sigma=0.5)
    with torch.no_grad():
        head.proj.weight.mul_(100.0)
    with torch.no_grad():
        out = head(torch.randn(5, 7, 8))
    assert out.logits.shape == (5, 7, 4)
    assert out.mu.shape == (5, 7, 4, 3)
    assert out.log_sigma.shape == (5, 7, 4, 3)
    assert float(out.log_sigma.min()) >= -1.0 and float(out.log_sigma.max()) <= 0.5
    assert float(out.log_sigma.min()) == -1.0 and float(out.log_sigma.max()) == 0.5  # big weights hit both bounds
    assert out.mean().shape == (5, 7, 3)


def test_mdn_head_layout():
    # with zero weights and a chosen bias, the output splits into logits | mu | log_sigma
    head = MDNHead(2, 2, 2)
    bias = torch.arange(2 * (1 + 2 * 2), dtype=torch.float32) / 10
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(bias)
    with torch.no_grad():
        out = head(torch.zeros(2))
    assert out.logits.tolist() == pytest.approx([0.0, 0.1])
    assert out.mu.tolist() == [pytest.approx([0.2, 0.3]), pytest.approx([0.4, 0.5])]
    assert out.log_sigma.tolist() == [pytest.approx([0.6, 0.7]), pytest.approx([0.8, 0.9])]


def _batch(n: int) -> MixtureParams:
    # 3 components, the second (index 1) most probable
    logits = torch.tensor([0.0, 1.0, math.log(0.5)], dtype=torch.float64)
    mu = torch.tensor([[-5.0, 0.0], [2.0, 3.0], [10.0, -10.0]], dtype=torch.float64)
    log_sigma = torch.log(torch.tensor([[0.1, 0.1], [0.5, 2.0], [0.3, 0.3]], dtype=torch.float64))
    return MixtureParams(logits.expand(n, 3), mu.expand(n, 3, 2), log_sigma.expand(n, 3, 2))


def test_sampling_modes_constant():
    assert SAMPLING_MODES == ("most_probable", "next_most_probable", "random")


def test_most_probable_is_argmax_mean_exactly():
    p = _batch(4)
    out = sample_mdn(p, "most_probable")
    assert out.shape == (4, 2)
    assert torch.equal(out, torch.tensor([[2.0, 3.0]] * 4, dtype=torch.float64))
    # per-row argmax
    logits = torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    mu = torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]]])
    out = sample_mdn(MixtureParams(logits, mu, torch.zeros(2, 2, 1)), "most_probable")
    assert out.tolist() == [[1.0], [4.0]]


def test_next_most_probable_huge_divisor_is_near_mean():
    p = _batch(1000)
    g = torch.Generator().manual_seed(0)
    out = sample_mdn(p, "next_most_probable", sigma_divisor=1e8, generator=g)
    assert (out - torch.tensor([2.0, 3.0], dtype=torch.float64)).abs().max() < 1e-6


def test_next_most_probable_divisor_one_has_component_sigma():
    p = _batch(20000)
    g = torch.Generator().manual_seed(1)
    out = sample_mdn(p, "next_most_probable", sigma_divisor=1.0, generator=g)
    std = out.std(dim=0).numpy()
    mean = out.mean(dim=0).numpy()
    np.testing.assert_allclose(std, [0.5, 2.0], rtol=0.03)
    np.testing.assert_allclose(mean, [2.0, 3.0], atol=0.05)
    # a divisor scales the spread
    out4 = sample_mdn(p, "next_most_probable", sigma_divisor=4.0, generator=g)
    np.testing.assert_allclose(out4.std(dim=0).numpy(), [0.125, 0.5], rtol=0.03)


def test_random_draws_components_in_proportion_to_weights():
    n = 20000
    p = _batch(n)
    weights = torch.softmax(p.logits[0], dim=-1).numpy()
    g = torch.Generator().manual_seed(2)
    out = sample_mdn(p, "random", sigma_divisor=1e6, generator=g)
    # every draw sits on one component's mean (sigma shrunk away); recover which
    centers = p.mu[0]                                           # (3, 2)
    dist = (out[:, None, :] - centers[None]).norm(dim=-1)      # (n, 3)
    assert float(dist.min(dim=1).values.max()) < 1e-4
    freq = np.bincount(dist.argmin(dim=1).numpy(), minlength=3) / n
    np.testing.assert_allclose(freq, weights, atol=0.015)


def test_random_with_divisor_one_has_mixture_moments():
    n = 20000
    p = _batch(n)
    g = torch.Generator().manual_seed(3)
    out = sample_mdn(p, "random", generator=g)
    np.testing.assert_allclose(out.mean(dim=0).numpy(), p.mean()[0].numpy(), atol=0.15)


@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_seeded_generator_is_reproducible(mode):
    p = _batch(64)
    a = sample_mdn(p, mode, sigma_divisor=2.0, generator=torch.Generator().manual_seed(123))
    b = sample_mdn(p, mode, sigma_divisor=2.0, generator=torch.Generator().manual_seed(123))
    assert torch.equal(a, b)
    if mode != "most_probable":
        c = sample_mdn(p, mode, sigma_divisor=2.0, generator=torch.Generator().manual_seed(124))
        assert not torch.equal(a, c)


def test_sampling_keeps_leading_dims():
    p = _batch(6)
    p = MixtureParams(p.logits.reshape(2, 3, 3), p.mu.reshape(2, 3, 3, 2), p.log_sigma.reshape(2, 3, 3, 2))
    for mode in SAMPLING_MODES:
        assert sample_mdn(p, mode, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 2)


@pytest.mark.parametrize("mode", ["argmax", "", "Random"])
def test_invalid_mode_raises(mode):
    with pytest.raises(ValueError, match="mode"):
        sample_mdn(_batch(2), mode)


@pytest.mark.parametrize("divisor", [0.0, -1.0])
def test_invalid_divisor_raises(divisor):
    with pytest.raises(ValueError, match="sigma_divisor"):
        sample_mdn(_batch(2), "random", sigma_divisor=divisor)
