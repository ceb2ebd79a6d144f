"""Every use of a private Ray Tune or Optuna API, in one place.

Each is something the public API does not offer (yet); tests/studies/
test_compat.py exercises every function here against the installed versions,
so an upgrade that moves one fails there, by name, not somewhere in a study.
pyproject.toml pins Ray and Optuna to the minor versions CI tests.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import optuna

# --- Ray Tune's OptunaSearch: the Optuna study and trials it holds -----------------------

def searcher_study(searcher: Any) -> optuna.Study:
    """The Optuna study an OptunaSearch asks and tells."""
    return searcher._ot_study


def searcher_trials(searcher: Any) -> dict[str, optuna.Trial]:
    """Tune trial id -> the Optuna trial OptunaSearch opened for it."""
    return searcher._ot_trials


def searcher_completed(searcher: Any) -> set[str]:
    """Tune trial ids whose outcome OptunaSearch has already told Optuna."""
    return searcher._completed_trials


# --- Ray Tune's ResultGrid: the trials themselves -----------------------------------------

def grid_trials(grid: Any) -> list[Any]:
    """Every Tune Trial of a finished fit (status, config, last result), which
    ResultGrid's public Results do not carry."""
    return list(getattr(getattr(grid, "_experiment_analysis", None), "trials", None) or [])


# --- Optuna: writing to a trial that is no longer the sampler's --------------------------

def set_trial_user_attr(study: optuna.Study, trial: optuna.trial.FrozenTrial, key: str, value: Any) -> None:
    """A user attribute on a trial found by ``get_trials`` (a FrozenTrial has no setter)."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def set_trial_intermediate_value(study: optuna.Study, trial: optuna.trial.FrozenTrial, step: int, value: float) -> None:
    study._storage.set_trial_intermediate_value(trial._trial_id, step, value)


# --- Interruption: did Tune's stop-signal handler fire? ----------------------------------

def fit_interrupted(fit: Callable[[], Any]) -> tuple[Any, bool]:
    """Run ``fit`` (a ``Tuner.fit``); return its result and whether a stop
    signal (Ctrl+C, SIGINT, SIGUSR1) ended it. Tune installs its own SIGINT
    handler for the fit, and when a stop signal arrives that handler puts the
    previous SIGINT handler back; after a fit it was not stopped, Tune's
    handler stays. So "the handler from before is back" means it fired, read
    from public ``signal`` state. Where Tune does not install one
    (``TUNE_DISABLE_SIGINT_HANDLER=1``, or not the main thread), Ctrl+C raises
    KeyboardInterrupt instead, and this says False."""
    tune_catches = (threading.current_thread() is threading.main_thread()
                    and not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") or 0))
    before = signal.getsignal(signal.SIGINT)
    result = fit()
    return result, tune_catches and signal.getsignal(signal.SIGINT) is before
