"""Loss-weight schedules as pure functions of training progress.

Progress is a fraction of the training budget in [0, 1] (epoch / max_epochs),
so a schedule means the same thing whatever the budget (a smoke run of 3
epochs and a full run of 30 ramp at the same point of training).
"""

from __future__ import annotations

import math

RAMP_SHAPES = ("constant", "step", "linear", "exponential")


def _ramp_fraction(progress: float, start: float, length: float) -> float:
    """How far through the ramp we are, clipped to [0, 1]."""
    if length <= 0.0:
        return 1.0 if progress >= start else 0.0
    return min(1.0, max(0.0, (progress - start) / length))


def ramp_weight(
    progress: float,
    *,
    shape: str,
    initial_weight: float = 0.1,
    ramp_start: float = 0.0,
    ramp_length: float = 0.5,
    final_weight: float = 1.0,
) -> float:
    """Weight of a loss term at ``progress`` (fraction of the budget).

    - ``constant``: ``final_weight`` throughout (no ramp: the baseline);
    - ``step``: ``initial_weight`` until ``ramp_start``, then ``final_weight``;
    - ``linear``: straight line from ``initial_weight`` at ``ramp_start`` to
      ``final_weight`` at ``ramp_start + ramp_length``;
    - ``exponential``: geometric interpolation over the same interval, i.e. the
      weight grows by a constant factor per unit of progress (slow, then fast).
    """
    if shape == "constant":
        return final_weight
    if shape == "step":
        return final_weight if progress >= ramp_start else initial_weight
    frac = _ramp_fraction(progress, ramp_start, ramp_length)
    if shape == "linear":
        return initial_weight + (final_weight - initial_weight) * frac
    if shape == "exponential":
        if initial_weight <= 0.0:
            raise ValueError(
                f"The value of `initial_weight` is {initial_weight}, but an "
                "exponential ramp needs `initial_weight > 0`"
            )
        return initial_weight * (final_weight / initial_weight) ** frac
    raise ValueError(f"The value of `shape` is {shape!r}, but must be one of {RAMP_SHAPES}")


def cosine_factor(step: int, total_steps: int, *, start: float = 100.0, end: float = 1.0) -> float:
    """Half-cosine from ``start`` at step 0 to ``end`` at the last step.

    The research notes divide the MDN sigma by this factor while generating a
    sequence: sharp (near-deterministic) at first, full spread at the end.
    """
    if total_steps <= 1:
        return end
    t = min(max(step / (total_steps - 1), 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))


SIGMA_SHAPES = ("constant", "linear", "cosine")


def sigma_divisor(step: int, steps: int, *, start: float, end: float, shape: str) -> float:
    """Factor the MDN sigma is divided by at generation step ``step`` of ``steps``.

    - ``constant``: ``start`` throughout (``end`` is unused);
    - ``linear``: straight line from ``start`` at step 0 to ``end`` at the last step;
    - ``cosine``: the half-cosine of :func:`cosine_factor` (the research notes'
      choice, 100 -> 1: near-deterministic first frames, the model's own spread
      at the end).

    A divisor above 1 sharpens the sampled Gaussian, below 1 widens it.
    """
    if shape not in SIGMA_SHAPES:
        raise ValueError(f"The value of `shape` is {shape!r}, but must be one of {SIGMA_SHAPES}")
    for name, value in (("start", start), ("end", end)):
        if not value > 0:
            raise ValueError(f"The value of `{name}` is {value}, but must be `{name} > 0`")
    if shape == "constant":
        return start
    if shape == "cosine":
        return cosine_factor(step, steps, start=start, end=end)
    if steps <= 1:
        return end
    t = min(max(step / (steps - 1), 0.0), 1.0)
    return start + (end - start) * t


def kl_beta(
    progress: float,
    *,
    kind: str,
    cycles: float = 4.0,
    ratio: float = 0.5,
) -> float:
    """KL weight for CVAE training (Fu et al. 2019, "Cyclical Annealing Schedule").

    - ``none``: 1 throughout;
    - ``monotonic``: linear 0 -> 1 over the first ``ratio`` of training, then 1;
    - ``cyclical``: ``cycles`` cycles over training, each rising linearly from 0
      to 1 during its first ``ratio`` and staying at 1 for the rest.
    """
    if kind == "none":
        return 1.0
    if kind == "monotonic":
        return ramp_weight(progress, shape="linear", initial_weight=0.0, ramp_start=0.0, ramp_length=ratio)
    if kind == "cyclical":
        if cycles <= 0:
            raise ValueError(f"The value of `cycles` is {cycles}, but must be `cycles > 0`")
        position = (progress * cycles) % 1.0
        return ramp_weight(position, shape="linear", initial_weight=0.0, ramp_start=0.0, ramp_length=ratio)
    raise ValueError(f"The value of `kind` is {kind!r}, but must be one of ('none', 'monotonic', 'cyclical')")


KL_ANNEAL_KINDS = ("none", "monotonic", "cyclical")


def kl_beta_epochs(epoch: float, *, kind: str, cycle_epochs: float, ratio: float = 0.5) -> float:
    """KL weight with the cycle given in epochs (Fu et al. 2019), not in cycles per run.

    ``epoch`` is the (fractional, 0-based) number of epochs trained so far, e.g.
    ``epoch + batch / num_batches`` for a per-iteration schedule as in the paper.
    It is :func:`kl_beta` on a clock that counts cycles instead of the budget
    (``progress = epoch / cycle_epochs`` with one cycle per unit), so a cycle of
    4 epochs is the same curve in a 4-epoch smoke run and a 40-epoch study:

    - ``none``: 1 throughout (no annealing: the baseline);
    - ``monotonic``: the first cycle only, i.e. linear 0 -> 1 over the first
      ``ratio * cycle_epochs`` epochs, then 1 for the rest of training;
    - ``cyclical``: every ``cycle_epochs`` epochs beta restarts at 0, rises
      linearly to 1 over the first ``ratio`` of the cycle and stays at 1.
    """
    if kind not in KL_ANNEAL_KINDS:
        raise ValueError(f"The value of `kind` is {kind!r}, but must be one of {KL_ANNEAL_KINDS}")
    if cycle_epochs <= 0:
        raise ValueError(f"The value of `cycle_epochs` is {cycle_epochs}, but must be `cycle_epochs > 0`")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"The value of `ratio` is {ratio}, but must be 0 <= ratio <= 1")
    return kl_beta(epoch / cycle_epochs, kind=kind, cycles=1.0, ratio=ratio)


def teacher_forcing_ratio(epoch: int, tfr: float, tfr_sde: int, tfr_d_step: float, lower: float = 0.0) -> float:
    """Probability of teacher forcing (feeding the ground-truth previous frame
    instead of the model's own prediction) in 0-based epoch ``epoch``.

    Scheduled sampling (Bengio et al. 2015) with a linear decay in epochs, as in
    the CVAE video-prediction recipe this family follows: ``tfr`` up to and
    including the decay start epoch ``tfr_sde``, then ``tfr_d_step`` less for
    each epoch after it, never below ``lower``::

        ratio(epoch) = max(lower, tfr - tfr_d_step * max(0, epoch - tfr_sde))

    (``lower`` only bounds the decay: a ``tfr`` already below it is kept.)
    """
    if not 0.0 <= tfr <= 1.0:
        raise ValueError(f"The value of `tfr` is {tfr}, but must be 0 <= tfr <= 1")
    if tfr_d_step < 0.0:
        raise ValueError(f"The value of `tfr_d_step` is {tfr_d_step}, but must be >= 0")
    if not 0.0 <= lower <= 1.0:
        raise ValueError(f"The value of `lower` is {lower}, but must be 0 <= lower <= 1")
    decayed = tfr - tfr_d_step * max(0, epoch - tfr_sde)
    return max(min(lower, tfr), decayed)
