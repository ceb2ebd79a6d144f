"""What of Ray's, Tune's and Optuna's own output is noise on a study's console,
and the switches those libraries offer to turn it off. Real warnings and
errors still come through: only the lines named here are silenced.

- Tune's new output engine prints a configuration box, "View detailed
  results here" and a TensorBoard hint into Ray's temp folder even at
  ``verbose=0``; its legacy engine (``RAY_AIR_NEW_OUTPUT=0``) prints nothing
  at ``verbose=0``. ``studies.tune.progress`` prints the lines instead.
- A fresh local Ray turns token authentication on by default and logs a
  warning saying so; that one line (only it) is filtered off Ray's logger.
  Setting ``RAY_AUTH_MODE=token`` ourselves would also hush it, but only
  Ray's private set-up refreshes the config this process already read.
- After Ctrl+C, Tune advises ``Tuner.restore(...)``; the CLI prints its own
  ``--resume`` command instead, so Tune's line is filtered.
- Optuna logs "A new study created in RDB" at INFO.
- A Ray worker answers SIGTERM (the raylet ending an idle worker it started
  ahead of need) by raising SystemExit from its signal handler. When that
  lands inside a garbage-collector callback, Python prints it as "Exception
  ignored in ... SystemExit: 1", and the driver forwards it with the worker's
  output: a traceback on the console that says nothing about the study.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import optuna


@contextmanager
def environ(**values: str) -> Iterator[None]:
    """Set environment variables for the block, then put the old ones back."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def quiet_tune() -> Iterator[None]:
    """Around ``Tuner.fit``: Tune's legacy output engine, silent at verbose=0, and Optuna at WARNING."""
    with environ(RAY_AIR_NEW_OUTPUT="0"), quiet_optuna():
        yield


class _DropMessages(logging.Filter):
    def __init__(self, *starts: str):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


_DROPPED = {
    "ray._private.authentication.authentication_token_setup":
        _DropMessages("Token authentication is enabled for this Ray cluster."),
    # After a stop signal Tune advises `Tuner.restore(...)`; the CLI prints its own `--resume` command.
    "ray.tune.tune": _DropMessages("Experiment has been interrupted, but the most recent state was saved."),
}


def quiet_ray_start() -> None:
    """Before ``ray.init``: drop the lines above off Ray's loggers (idempotent)."""
    for name, drop in _DROPPED.items():
        logger = logging.getLogger(name)
        if drop not in logger.filters:
            logger.addFilter(drop)


# Frames of Ray's own worker SIGTERM handler (ray/_private/worker.py, Worker.main_loop).
_WORKER_SIGTERM_FRAMES = ("in sigterm_handler", "raise_sys_exit_with_custom_error_message")


def without_worker_exit_noise(lines: list[str]) -> list[str]:
    """Worker output less each "Exception ignored in ... SystemExit" block raised by
    Ray's own worker SIGTERM handler; every other line, tracebacks included, is kept."""
    out: list[str] = []
    block: list[str] | None = None
    for line in lines:
        if line.startswith("Exception ignored"):
            out.extend(block or [])
            block = [line]
        elif block is None:
            out.append(line)
        else:
            block.append(line)
            if line.startswith("SystemExit"):
                if not any(frame in seen for seen in block for frame in _WORKER_SIGTERM_FRAMES):
                    out.extend(block)
                block = None
    out.extend(block or [])
    return out


@contextmanager
def quiet_optuna(level: int = logging.WARNING) -> Iterator[None]:
    """Optuna's INFO lines (study created, trial finished) are not ours to print;
    its verbosity is put back afterwards."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(level)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)
