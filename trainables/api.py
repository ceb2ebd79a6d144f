"""What a user's own trainable needs from this platform (a study spec names it
with ``trainable: my_pkg.my_module:train_fn``).

The short way: write an experiment (``train_epoch``, ``evaluate``,
``state_dict``, ``load_state_dict``, as the bundled families do) and a
``build(config, device)`` that makes one, then

    train_fn = experiment_trainable(build)

and the platform runs the epochs, reports each with its ``epoch``, refuses a
NaN or infinite metric, checkpoints every ``budget.checkpoint_every`` epochs and
resumes a retried or resumed trial from its last checkpoint.

The long way: any Ray Tune function trainable ``train_fn(config)`` that reports
every epoch with an ``epoch`` key (ASHA's time attribute) and the study's
metric. ``report_epoch``, ``load_checkpoint`` and ``trial_device`` help with
that; calling ``ray.tune.report`` directly works just as well.

Importing this module imports neither torch nor Ray (a user's module that
imports it stays cheap to import on the driver); they load when a trial runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.training import Experiment

__all__ = ["Experiment", "experiment_trainable", "report_epoch", "load_checkpoint", "trial_device"]


def experiment_trainable(build: Callable[[dict[str, Any], Any], Experiment]) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable that runs ``build(config, device)``'s experiment
    for ``config["max_epochs"]`` epochs, with checkpoints and resume.
    ``config`` is the trial's whole config (its own keys, the study's fixed
    ``config:``, ``max_epochs``, ``seed``, ``trial_seed``, ``checkpoint_every``
    and, with ``--data``, ``data_path``)."""

    def train(config: dict[str, Any]) -> None:
        from trainables._loop import run_trial

        run_trial(config, build)

    train.__name__ = train.__qualname__ = f"train_{getattr(build, '__name__', 'experiment')}"  # Tune names trials by it
    return train


def report_epoch(metrics: dict[str, float], *, epoch: int, state: dict[str, Any] | None = None) -> None:
    """Report epoch ``epoch`` (1-based); with ``state`` (tensors, numbers, strings,
    dicts and lists of those) also save a checkpoint that ``load_checkpoint()``
    returns when the trial is resumed."""
    from trainables._tune_api import report

    report({**metrics, "epoch": int(epoch)}, state=state)


def load_checkpoint() -> dict[str, Any] | None:
    """The state of this trial's last checkpoint, or None on a fresh start."""
    from trainables._tune_api import load_checkpoint as load

    return load()


def trial_device() -> Any:
    """The torch device Ray assigned to this trial (its GPU, else the CPU)."""
    from trainables._tune_api import trial_device as device

    return device()
