"""Multi-objective asynchronous successive halving as a Ray Tune scheduler.

Schmucker, Donini, Zafar, Salinas, Archambeau (2021), "Multi-objective
Asynchronous Successive Halving", arXiv:2106.12639 (MO-ASHA). It keeps ASHA's
rungs and its asynchronous promotion (Li et al. 2020, "A System for Massively
Parallel Hyperparameter Tuning", arXiv:1810.05934) and replaces the scalar
"top 1/rf" test at a rung by a ranking of objective vectors.

The bookkeeping mirrors Ray's ``AsyncHyperBandScheduler`` (ray/tune/schedulers/
async_hyperband.py, Ray 2.60) line for line: the same milestones, the same walk
over the rungs, the same early returns. With one objective the decision is
ASHA's own quantile rule, so a single-objective study makes exactly the
decisions Ray's ``ASHAScheduler`` makes on the same results.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

from studies.spec.pareto import as_minimised, pareto_front_mask, pareto_order, resolve_ties
from studies.spec.rungs import Rungs

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

logger = logging.getLogger(__name__)

__all__ = ["MultiObjectiveASHA", "promotes"]

RungState = list[list[dict[str, Any]]]


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _is_extreme(pool: np.ndarray, modes: list[str]) -> bool:
    """Is the pool's last row an end of its Pareto front: non-dominated, and holding
    the best value of some objective among the pool's finite rows (up to the
    resolution of ``studies.spec.pareto``)? An objective on which every finite row ties
    has no end: it makes no one extreme."""
    last = pool.shape[0] - 1
    if not pareto_front_mask(pool, modes)[last]:
        return False
    p = as_minimised(resolve_ties(pool), modes)
    finite = p[~np.isnan(p).any(axis=1)]
    best, worst = finite.min(axis=0), finite.max(axis=0)
    return bool(np.any((p[last] == best) & (worst > best)))


def promotes(pool: np.ndarray, modes: list[str], reduction_factor: float) -> bool:
    """The MO-ASHA decision, ``m >= 2``: does the last row of ``pool`` (the newcomer;
    the rows before it are the rung's recorded vectors, in the order recorded) go on?

    It goes on iff it is among the first ``ceil(len(pool) / reduction_factor)`` of
    ``pareto_order``, or is an end of the front (``_is_extreme``). Why the second:
    the crowding distance gives every end of a front ``inf``, and ends tie among
    themselves by recording order, so with more ends than places (a front of two
    at a rung of three, or the up to ``2m`` ends of an ``m``-objective front) a late
    end, e.g. the baseline best in one objective, lost a tie to earlier ends and was
    stopped although no trial beats it in the objective it is best in. An end is
    never stopped by a tie rule: it goes on even where the places are taken (only
    a newcomer that matches or improves on the rung's best in some objective can be one)."""
    order = pareto_order(pool, modes)
    position = int(np.flatnonzero(order == len(pool) - 1)[0])
    return position < math.ceil(len(pool) / reduction_factor) or _is_extreme(pool, modes)


class _Bracket:
    """One bracket's rungs: ``(milestone, {trial_id: objective vector})``, highest
    milestone first, exactly as Ray's ``_Bracket`` lays them out. Vectors are kept
    in the objectives' own units (plain floats), so the state reads as reported."""

    def __init__(self, min_t: int, max_t: int, reduction_factor: float, s: int, modes: list[str],
                 stop_last_trials: bool = True) -> None:
        self.rf = reduction_factor
        self._modes = modes
        # Ray's milestones, float rounding included (studies.spec.rungs, the one place they are computed):
        # the same rungs for the same arguments, so the same decision epochs.
        self._rungs: list[tuple[float, dict[str, tuple[float, ...]]]] = [
            (milestone, {}) for milestone in reversed(Rungs(min_t, reduction_factor, max_t).bracket_milestones(s))
        ]
        self._stop_last_trials = stop_last_trials

    def _scalar_cutoff(self, recorded: dict[str, tuple[float, ...]]) -> float | None:
        """ASHA's cutoff on the sign-adjusted metric (larger is better)."""
        if not recorded:
            return None
        op = 1.0 if self._modes[0] == "max" else -1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN rung: Ray warns, the cutoff is NaN
            return float(np.nanpercentile([op * v[0] for v in recorded.values()], (1 - 1 / self.rf) * 100))

    def _continues(self, recorded: dict[str, tuple[float, ...]], vector: tuple[float, ...]) -> bool:
        if len(self._modes) == 1:
            # ASHA: stop iff the reward is below the (1 - 1/rf) quantile of the rung (NaN never is).
            cutoff = self._scalar_cutoff(recorded)
            op = 1.0 if self._modes[0] == "max" else -1.0
            return not (cutoff is not None and op * vector[0] < cutoff)
        pool = np.array([*recorded.values(), vector], dtype=float)
        return promotes(pool, self._modes, self.rf)

    def on_result(self, trial_id: str, cur_iter: float, vector: tuple[float, ...]) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self._rungs:
            if cur_iter >= milestone and trial_id in recorded and not self._stop_last_trials:
                break  # decided at this rung already (Ray's shortcut)
            if cur_iter < milestone or trial_id in recorded:
                continue
            if not self._continues(recorded, vector):
                action = TrialScheduler.STOP
            recorded[trial_id] = vector
            break
        return action

    def debug_str(self) -> str:
        if len(self._modes) == 1:
            parts = [f"Iter {milestone:.3f}: {self._scalar_cutoff(recorded)}" for milestone, recorded in self._rungs]
        else:
            parts = [f"Iter {milestone:.3f}: {len(recorded)} recorded" for milestone, recorded in self._rungs]
        return "Bracket: " + " | ".join(parts)


class MultiObjectiveASHA(FIFOScheduler):
    """Asynchronous successive halving on several objectives at once (MO-ASHA).

    Rungs are ASHA's: milestones ``grace_period * reduction_factor**k`` up to
    ``max_t``, exactly those of ``ASHAScheduler`` for the same arguments
    (``studies.spec.rungs.Rungs``; decided at ``Rungs.epochs``). As in
    ASHA, a trial is judged once per rung, when it first reports a ``time_attr``
    at or past the rung's milestone, against the trials recorded there so far
    (asynchronously: nobody waits for the rung to fill), and then recorded there.

    Promotion rule, ``m >= 2`` objectives (Schmucker et al. 2021, MO-ASHA): the
    trial's objective vector ``x`` is ranked together with the vectors ``R``
    already recorded at the rung by non-dominated sorting (Pareto fronts), ties
    within a front broken by the NSGA-II crowding distance (the more isolated
    point first; then the earlier recorded trial, so the newcomer loses exact
    ties): ``studies.spec.pareto.pareto_order``. The trial continues iff ``x`` is
    among the first ``ceil(|R ∪ {x}| / reduction_factor)`` of that order, or if
    ``x`` is an end of the front (non-dominated and best in one objective among
    ``R ∪ {x}``): the ends all have infinite crowding distance, and a tie rule
    must not stop the trial that is best in an objective (``promotes``). The
    first trial at a rung therefore always continues. A vector with a NaN ranks
    last. Values of an objective that differ by less than 1e-9 of its magnitude
    are ties (``studies.spec.pareto.RESOLUTION``). The paper's other tie-break is an epsilon-net (greedy farthest-point
    selection within a front); the crowding distance is used here.

    With ``m == 1`` the rule is ASHA's own: continue iff the value is not worse
    than the ``(1 - 1/rf)`` quantile (``np.nanpercentile``) of the rung's recorded
    values. The decisions are then exactly ``ASHAScheduler``'s, NaN included
    (a NaN never falls below the cutoff, so it continues, and is recorded).

    A result lacking ``time_attr`` or any of the metrics (or with one of them
    None or not a number) is ignored, as ASHA ignores a result without its metric:
    CONTINUE, nothing recorded. Past ``max_t`` a trial is stopped
    (``stop_last_trials``, as ASHA).

    ``metrics``/``modes`` belong to the scheduler; Tune's own metric/mode may be
    left unset (``TuneConfig(metric=None, mode=None)``), or set to one of these
    objectives with its mode, see ``set_search_properties``.

    ``get_rungs``/``set_rungs`` carry the recorded rungs across a driver resume
    as plain data (Tune restores a scheduler pickled when the run started).
    """

    def __init__(
        self,
        time_attr: str = "epoch",
        *,
        metrics: str | Sequence[str],
        modes: str | Sequence[str],
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 3,
        brackets: int = 1,
        stop_last_trials: bool = True,
    ) -> None:
        names, directions = _as_list(metrics), _as_list(modes)
        if not names:
            raise ValueError("MultiObjectiveASHA needs at least one metric")
        if len(set(names)) != len(names):
            raise ValueError(f"metrics repeat a name: {names}")
        if len(directions) != len(names):
            raise ValueError(f"{len(directions)} modes for {len(names)} metrics")
        if any(d not in ("min", "max") for d in directions):
            raise ValueError(f"each mode must be 'min' or 'max', got {directions}")
        if not max_t > 0:
            raise ValueError("max_t must be positive")
        if not grace_period > 0:
            raise ValueError("grace_period must be positive")
        if not max_t >= grace_period:
            raise ValueError("grace_period must be <= max_t")
        if not reduction_factor > 1:
            raise ValueError("reduction_factor must be > 1")
        if not brackets > 0:
            raise ValueError("brackets must be positive")
        super().__init__()
        self._metrics = names
        self._modes = directions
        self._time_attr = time_attr
        self._max_t = max_t
        self._reduction_factor = reduction_factor
        self._stop_last_trials = stop_last_trials
        self._brackets = [
            _Bracket(grace_period, max_t, reduction_factor, s, directions, stop_last_trials=stop_last_trials)
            for s in range(brackets)
        ]
        self._trial_info: dict[str, _Bracket] = {}
        self._num_stopped = 0
        self._warned_missing: set[str] = set()
        # What Tune reads as ``scheduler.metric``: it checks each result holds it
        # (TuneController._validate_result_metrics, with a dict lookup, so it must be
        # one string). One objective: that metric, as ASHA. Several: none, since
        # naming one would check that one alone.
        self._metric = names[0] if len(names) == 1 else None
        self._mode = directions[0] if len(directions) == 1 else None

    @property
    def metrics(self) -> list[str]:
        return list(self._metrics)

    @property
    def modes(self) -> list[str]:
        return list(self._modes)

    def set_search_properties(self, metric: str | Sequence[str] | None, mode: str | Sequence[str] | None,
                              **spec: Any) -> bool:
        """Tune offers TuneConfig's metric/mode here. The scheduler keeps its own
        objectives and accepts (ignoring it) anything consistent with them: nothing,
        all or some of its metrics each with its own mode, or a mode alone that is
        every objective's. Anything else returns False (Tune then raises)."""
        if metric is None and mode is None:
            return True
        directions = None if mode is None else _as_list(mode)
        if metric is None:
            assert directions is not None
            return directions == self._modes or (len(directions) == 1 and set(self._modes) == set(directions))
        names = _as_list(metric)
        if directions is not None and len(directions) != len(names):
            return False
        for i, name in enumerate(names):
            if name not in self._metrics:
                return False
            if directions is not None and directions[i] != self._modes[self._metrics.index(name)]:
                return False
        return True

    def _bracket_for(self, trial_id: str) -> _Bracket:
        if len(self._brackets) > 1:
            # A trial Tune re-adds after a resume goes back to the bracket that recorded it.
            for bracket in self._brackets:
                if any(trial_id in recorded for _, recorded in bracket._rungs):
                    return bracket
            # ASHA's choice: a softmax over the brackets' rung counts.
            sizes = np.array([len(b._rungs) for b in self._brackets])
            probs = np.e ** (sizes - sizes.max())
            normalized = probs / probs.sum()
            return self._brackets[np.random.choice(len(self._brackets), p=normalized)]
        return self._brackets[0]

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        self._trial_info[trial.trial_id] = self._bracket_for(trial.trial_id)

    def _has_metrics(self, result: dict) -> bool:
        missing = [name for name in self._metrics if name not in result]
        for name in missing:
            if name not in self._warned_missing:
                self._warned_missing.add(name)
                logger.warning("MultiObjectiveASHA: a result without %r; results without every objective are "
                               "ignored (the trial continues, nothing is recorded)", name)
        return not missing

    def _vector(self, result: dict) -> tuple[float, ...] | None:
        """The objective vector of a result, or None where one is missing (ignored, as ASHA ignores it)."""
        values = []
        for name in self._metrics:
            value = result.get(name)
            try:
                values.append(float(value))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                if name not in self._warned_missing:
                    self._warned_missing.add(name)
                    logger.warning("MultiObjectiveASHA: a result without a number for %r (%r); such results are "
                                   "ignored (the trial continues, nothing is recorded)", name, value)
                return None
        return tuple(values)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        action = TrialScheduler.CONTINUE
        if self._time_attr not in result or not self._has_metrics(result):
            return action
        if result[self._time_attr] >= self._max_t and self._stop_last_trials:
            action = TrialScheduler.STOP
        else:
            vector = self._vector(result)
            if vector is None:  # present but None or not a number: ignored (Ray's ASHA would raise)
                return action
            bracket = self._trial_info.get(trial.trial_id)
            if bracket is None:  # a result before on_trial_add (Ray's ASHA would raise KeyError)
                bracket = self._trial_info[trial.trial_id] = self._bracket_for(trial.trial_id)
            action = bracket.on_result(trial.trial_id, result[self._time_attr], vector)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict) -> None:
        bracket = self._trial_info.pop(trial.trial_id, None)
        if not result or self._time_attr not in result or not self._has_metrics(result):
            return
        vector = self._vector(result)
        if vector is None:
            return
        if bracket is None:
            bracket = self._bracket_for(trial.trial_id)
        bracket.on_result(trial.trial_id, result[self._time_attr], vector)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        self._trial_info.pop(trial.trial_id, None)

    def get_rungs(self) -> RungState:
        """Per bracket, per rung (highest milestone first): ``{"milestone": float,
        "recorded": {trial_id: [float, ...]}}``, the vectors in the metrics' own
        units and order. Plain data: picklable, JSON-able but for NaN."""
        return [
            [{"milestone": float(milestone), "recorded": {str(t): [float(v) for v in vec] for t, vec in recorded.items()}}
             for milestone, recorded in bracket._rungs]
            for bracket in self._brackets
        ]

    def set_rungs(self, state: RungState) -> None:
        """Put ``get_rungs``'s output back into a scheduler built with the same
        arguments; later decisions are then those the saved scheduler would make."""
        saved_shape = [[float(r["milestone"]) for r in bracket] for bracket in state]
        shape = [[float(m) for m, _ in bracket._rungs] for bracket in self._brackets]
        if saved_shape != shape:
            raise ValueError(f"rungs at {saved_shape} do not fit this scheduler's {shape}")
        m = len(self._metrics)
        for bracket, saved in zip(self._brackets, state):
            rungs = []
            for (milestone, _), rung in zip(bracket._rungs, saved):
                recorded = {str(t): tuple(float(v) for v in vec) for t, vec in rung["recorded"].items()}
                if any(len(vec) != m for vec in recorded.values()):
                    raise ValueError(f"saved vectors do not have {m} objectives ({self._metrics})")
                rungs.append((milestone, recorded))
            bracket._rungs = rungs

    def debug_string(self) -> str:
        objectives = ", ".join(f"{n} ({d})" for n, d in zip(self._metrics, self._modes))
        out = f"Using MultiObjectiveASHA on {objectives}: num_stopped={self._num_stopped}"
        return out + "\n" + "\n".join(b.debug_str() for b in self._brackets)
