"""Stop before the run folder's disk is full (Ray-free).

A write that fails for want of space (ENOSPC) can leave Tune's snapshot torn
and optuna.db behind it; a resume from there re-ran trials and overshot
``num_samples``. So a study stops cleanly, as on Ctrl+C, while there is still
room for a whole snapshot: when the free space on the run folder's disk falls
below ``$RAYSTUDIES_MIN_FREE_MB`` (default 256). A run is refused at the
start, with one line, below that mark.
"""

from __future__ import annotations

import os
from pathlib import Path

MIN_FREE_ENV = "RAYSTUDIES_MIN_FREE_MB"
DEFAULT_MIN_FREE_MB = 256.0


def min_free_bytes() -> int:
    raw = os.environ.get(MIN_FREE_ENV, "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_MIN_FREE_MB
    except ValueError:
        mb = DEFAULT_MIN_FREE_MB
    return int(max(mb, 0.0) * 2**20)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def low_space(path: Path) -> str | None:
    """None, or the one line that says the disk of ``path`` is (nearly) full."""
    st = os.statvfs(_existing(path))
    free, need = st.f_bavail * st.f_frsize, min_free_bytes()
    if free >= need:
        return None
    return (f"{path}: disk nearly full ({free / 2**20:.0f} MiB free, a run keeps at least {need / 2**20:.0f} MiB, "
            f"${MIN_FREE_ENV})")


def disk_full_reason(exc: BaseException) -> str | None:
    """The message of the error (or of one it was raised from) that says no
    space was left; None when there is none."""
    import errno
    import sqlite3

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e).splitlines()[0][:200] if str(e) else e.__class__.__name__
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return text
        if isinstance(e, sqlite3.OperationalError) and "disk is full" in str(e):
            return text
        if "No space left on device" in str(e) or "database or disk is full" in str(e):
            return text
        e = e.__cause__ or e.__context__
    return None
