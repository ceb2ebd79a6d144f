"""Loss-weight schedules: every shape at hand-computed progress points."""

from __future__ import annotations

import math

import pytest

from core.schedules import RAMP_SHAPES, cosine_factor, kl_beta, ramp_weight

# initial 0.1 -> final 1.0 over progress [0.2, 0.6]
RAMP = dict(initial_weight=0.1, ramp_start=0.2, ramp_length=0.4, final_weight=1.0)


def test_ramp_shapes_constant():
    assert RAMP_SHAPES == ("constant", "step", "linear", "exponential")


@pytest.mark.parametrize("progress", [0.0, 0.1, 0.2, 0.4, 0.6, 0.9, 1.0])
def test_constant_is_final_weight_everywhere(progress):
    assert ramp_weight(progress, shape="constant", **RAMP) == 1.0
    assert ramp_weight(progress, shape="constant", initial_weight=0.3, final_weight=2.5) == 2.5


@pytest.mark.parametrize(
    "progress, expected",
    [(0.0, 0.1), (0.19, 0.1), (0.2, 1.0), (0.21, 1.0), (0.6, 1.0), (1.0, 1.0)],
)
def test_step(progress, expected):
    assert ramp_weight(progress, shape="step", **RAMP) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "progress, expected",
    [
        (0.0, 0.1),             # before the ramp starts
        (0.2, 0.1),             # at its start
        (0.3, 0.1 + 0.9 * 0.25),
        (0.4, 0.55),            # midpoint: arithmetic mean
        (0.5, 0.1 + 0.9 * 0.75),
        (0.6, 1.0),             # at its end
        (0.8, 1.0),             # after it
        (1.0, 1.0),
    ],
)
def test_linear(progress, expected):
    assert ramp_weight(progress, shape="linear", **RAMP) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "progress, expected",
    [
        (0.0, 0.1),
        (0.2, 0.1),
        (0.3, 0.1 * 10 ** 0.25),
        (0.4, math.sqrt(0.1 * 1.0)),  # midpoint: geometric mean
        (0.5, 0.1 * 10 ** 0.75),
        (0.6, 1.0),
        (0.9, 1.0),
    ],
)
def test_exponential_is_geometric(progress, expected):
    assert ramp_weight(progress, shape="exponential", **RAMP) == pytest.approx(expected, rel=1e-12)


def test_exponential_midpoint_geometric_mean_other_values():
    value = ramp_weight(0.25, shape="exponential", initial_weight=0.01, ramp_start=0.0, ramp_length=0.5, final_weight=4.0)
    assert value == pytest.approx(math.sqrt(0.01 * 4.0), rel=1e-12)
    # constant ratio per unit of progress: w(0.1)/w(0) == w(0.2)/w(0.1)
    w = [ramp_weight(p, shape="exponential", initial_weight=0.01, ramp_start=0.0, ramp_length=0.5, final_weight=4.0)
         for p in (0.0, 0.1, 0.2)]
    assert w[1] / w[0] == pytest.approx(w[2] / w[1], rel=1e-12)


def test_exponential_grows_slower_than_linear_mid_ramp():
    lin = ramp_weight(0.4, shape="linear", **RAMP)
    exp = ramp_weight(0.4, shape="exponential", **RAMP)
    assert exp < lin


def test_zero_length_ramp_is_a_step():
    kw = dict(initial_weight=0.1, ramp_start=0.5, ramp_length=0.0, final_weight=1.0)
    assert ramp_weight(0.49, shape="linear", **kw) == pytest.approx(0.1)
    assert ramp_weight(0.5, shape="linear", **kw) == pytest.approx(1.0)
    assert ramp_weight(0.49, shape="exponential", **kw) == pytest.approx(0.1)
    assert ramp_weight(0.5, shape="exponential", **kw) == pytest.approx(1.0)


def test_defaults():
    # initial 0.1, start 0, length 0.5, final 1
    assert ramp_weight(0.0, shape="linear") == pytest.approx(0.1)
    assert ramp_weight(0.25, shape="linear") == pytest.approx(0.55)
    assert ramp_weight(0.5, shape="linear") == pytest.approx(1.0)
    assert ramp_weight(0.25, shape="exponential") == pytest.approx(math.sqrt(0.1))


@pytest.mark.parametrize("shape", ["cosine", "", "Linear", "exp"])
def test_bad_shape_raises(shape):
    with pytest.raises(ValueError, match="shape"):
        ramp_weight(0.5, shape=shape)


@pytest.mark.parametrize("initial", [0.0, -0.1])
def test_exponential_needs_positive_initial(initial):
    with pytest.raises(ValueError, match="initial_weight"):
        ramp_weight(0.5, shape="exponential", initial_weight=initial)


def test_cosine_factor_endpoints_and_midpoint():
    n = 11
    assert cosine_factor(0, n) == pytest.approx(100.0)
    assert cosine_factor(n - 1, n) == pytest.approx(1.0)
    assert cosine_factor(5, n) == pytest.approx(50.5)
    # a quarter of the way: 1 + 99 * (1 + cos(pi/4)) / 2
    assert cosine_factor(1, 5) == pytest.approx(1 + 99 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_cosine_factor_monotone_and_clipped():
    values = [cosine_factor(s, 24) for s in range(24)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert cosine_factor(-3, 24) == pytest.approx(100.0)
    assert cosine_factor(99, 24) == pytest.approx(1.0)


def test_cosine_factor_custom_range_and_degenerate():
    assert cosine_factor(0, 3, start=10.0, end=2.0) == pytest.approx(10.0)
    assert cosine_factor(1, 3, start=10.0, end=2.0) == pytest.approx(6.0)
    assert cosine_factor(2, 3, start=10.0, end=2.0) == pytest.approx(2.0)
    assert cosine_factor(0, 1) == 1.0
    assert cosine_factor(0, 0, end=3.0) == 3.0


@pytest.mark.parametrize("progress", [0.0, 0.3, 1.0])
def test_kl_beta_none(progress):
    assert kl_beta(progress, kind="none") == 1.0


@pytest.mark.parametrize(
    "progress, expected",
    [(0.0, 0.0), (0.125, 0.25), (0.25, 0.5), (0.5, 1.0), (0.75, 1.0), (1.0, 1.0)],
)
def test_kl_beta_monotonic(progress, expected):
    assert kl_beta(progress, kind="monotonic", ratio=0.5) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "progress, expected",
    [
        (0.0, 0.0),
        (0.0625, 0.5),   # 1/4 of the first cycle, rising half of it
        (0.125, 1.0),    # end of rise
        (0.2, 1.0),      # plateau
        (0.25, 0.0),     # start of cycle 2
        (0.3125, 0.5),
        (0.5625, 0.5),   # cycle 3
        (0.875, 1.0),    # cycle 4 plateau
    ],
)
def test_kl_beta_cyclical(progress, expected):
    assert kl_beta(progress, kind="cyclical", cycles=4, ratio=0.5) == pytest.approx(expected, abs=1e-12)


def test_kl_beta_cyclical_two_cycles_ratio_quarter():
    # cycle length 0.5, rise over the first 0.125
    assert kl_beta(0.0625, kind="cyclical", cycles=2, ratio=0.25) == pytest.approx(0.5)
    assert kl_beta(0.3, kind="cyclical", cycles=2, ratio=0.25) == pytest.approx(1.0)
    assert kl_beta(0.5625, kind="cyclical", cycles=2, ratio=0.25) == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["linear", "", "Cyclical"])
def test_kl_beta_bad_kind(kind):
    with pytest.raises(ValueError, match="kind"):
        kl_beta(0.5, kind=kind)


@pytest.mark.parametrize("cycles", [0, -1.0])
def test_kl_beta_bad_cycles(cycles):
    with pytest.raises(ValueError, match="cycles"):
        kl_beta(0.5, kind="cyclical", cycles=cycles)
