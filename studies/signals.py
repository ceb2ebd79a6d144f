"""SIGTERM stops a run the way Ctrl+C does.

``timeout``, ``docker stop``, Slurm and Kubernetes send SIGTERM, and Ray's own
handler (installed by ``ray.init``) exits mid-call, leaving run.json
"running". Inside a Tune fit the handler here re-raises the signal as SIGINT,
which Tune turns into a clean stop with a snapshot; elsewhere it raises
:class:`~studies.errors.Terminated` (a KeyboardInterrupt). Either way the run
ends "interrupted", resumable, with exit code 143.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from studies.errors import Terminated


@dataclass
class StopSignal:
    terminated: bool = False   # set when SIGTERM arrived


@contextmanager
def sigterm_stops_cleanly() -> Iterator[StopSignal]:
    """Install the handler (main thread only) until the block ends; yield what arrived."""
    seen = StopSignal()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        seen.terminated = True
        if not stop_tune_cleanly():
            raise Terminated()

    before = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, before)


def stop_tune_cleanly() -> bool:
    """Ask a running Tune fit to stop as on Ctrl+C (a clean stop with a snapshot),
    once: Tune's SIGINT handler puts the previous one back after it fires, and a
    second SIGINT would then end the fit at once, without its last snapshot.
    False when there is no Tune handler to ask (it has fired already)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        return False
    signal.raise_signal(signal.SIGINT)
    return True
