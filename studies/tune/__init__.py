"""The Ray Tune / Optuna adapter: the only package of ``studies/`` that imports
Ray (``tests/test_layout.py``): the Tuner, the searcher, MO-ASHA, the trial
generator, the run folder's callbacks, progress lines, the Ray session and the
designed stage's Tuner.

The surface is loaded on first use, so that importing one light module of it
(``ray_session.check_address`` before Ray starts) does not import Ray itself."""

from __future__ import annotations

import importlib
from typing import Any

_SURFACE = {
    "build_tuner": "studies.tune.tuner", "restore_tuner": "studies.tune.tuner", "fit": "studies.tune.tuner",
    "concurrency": "studies.tune.tuner", "import_trainable": "studies.tune.tuner",
    "run_designed_stage": "studies.tune.designed_stage",
    "check_address": "studies.tune.ray_session", "machine_count": "studies.tune.ray_session",
}
__all__ = sorted(_SURFACE)


def __getattr__(name: str) -> Any:
    if name not in _SURFACE:
        raise AttributeError(f"module 'studies.tune' has no attribute {name!r}")
    return getattr(importlib.import_module(_SURFACE[name]), name)
