"""Imports paid once per Ray worker process, before it runs a trial.

Why: a trial actor's first epoch used to pay ~5 s of imports (torch, then
``torch._dynamo``, which every ``torch.optim`` optimizer imports at its first
step). Ray starts its workers when ``ray.init`` returns and hands them to the
trial actors later; with this hook (``worker_process_setup_hook``) those
workers import the trainable's module meanwhile, while the driver reads the
spec and the data, and a trial starts with them done.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

# The module to import (the family's experiment, or the user's trainable module).
PREIMPORT_ENV = "RAYSTUDIES_PREIMPORT"


def preimport() -> None:
    """The worker's setup hook. It must never fail the worker: an import that
    fails here fails again, with its real traceback, where the trial imports it."""
    name = os.environ.get(PREIMPORT_ENV)
    if not name:
        return
    try:
        importlib.import_module(name)
        if "torch" in sys.modules:
            importlib.import_module("torch._dynamo")   # what torch.optim imports at its first step
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logging.getLogger(__name__).debug("pre-import of %s failed: %s", name, exc)


def runtime_env(module: str | None) -> dict | None:
    """``ray.init``'s runtime_env that pre-imports ``module`` in every worker."""
    if not module:
        return None
    return {"worker_process_setup_hook": f"{__name__}.preimport", "env_vars": {PREIMPORT_ENV: module}}
