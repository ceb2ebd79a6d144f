"""Reading run folders into tables and plots. Ray-free: works on any run
folder, finished, interrupted or still being written on a cluster; never
imports ``studies.tune`` (``tests/test_layout.py``).

The surface is loaded on first use: its pandas, scipy and matplotlib are not
for ``--list`` and ``--runs``."""

from __future__ import annotations

import importlib
from typing import Any

_SURFACE = {"write_report": "studies.report.write", "WrittenReport": "studies.report.write",
            "best_trial": "studies.report.answer", "Claim": "studies.report.claims"}
__all__ = sorted(_SURFACE)


def __getattr__(name: str) -> Any:
    if name not in _SURFACE:
        raise AttributeError(f"module 'studies.report' has no attribute {name!r}")
    return getattr(importlib.import_module(_SURFACE[name]), name)
