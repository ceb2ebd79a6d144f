"""SIGTERM stops a run the way Ctrl+C does.

``timeout``, ``docker stop``, Slurm and Kubernetes send SIGTERM, and Ray's own
handler (installed by ``ray.init``) exits mid-call, leaving run.json
"running". Inside a Tune fit the handler here re-raises the signal as SIGINT,
which Tune turns into a clean stop with a snapshot; elsewhere it raises
:class:`~studies.errors.Terminated` (a KeyboardInterrupt). Either way the run
ends "interrupted", resumable, with exit code 143.

``timeout`` and batch schedulers (Slurm at a job's time limit) signal every
process of the job, not the driver alone: the local Ray the driver starts
(GCS, raylet, and the workers the raylet starts) would die with it, and Tune
could take no last snapshot. :func:`sigterm_blocked_in_children` starts them with
SIGTERM blocked, a mask a process inherits (through fork and exec, by pid or
by group, whoever sends the signal); the driver alone handles it, then ends
them itself when its Ray session closes.
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


@dataclass
class HeldSigterm:
    arrived: bool = False   # SIGTERM came to this process while the block ran, and was taken off


@contextmanager
def sigterm_blocked_in_children() -> Iterator[HeldSigterm]:
    """Processes started in the block (by this thread, or by threads this
    thread starts in it) inherit a blocked SIGTERM, as Ray's own start does
    with SIGINT. This thread's mask is restored when the block ends. A SIGTERM
    sent to this process meanwhile that no other thread took stays pending: it
    is taken off and said in ``arrived``, for the caller to act on once it can
    stop cleanly (the handler in place then may be none of ours)."""
    held = HeldSigterm()
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield held   # (Windows: no signal masks)
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield held
    finally:
        if signal.SIGTERM not in before and signal.SIGTERM in signal.sigpending():
            if hasattr(signal, "sigtimedwait"):
                held.arrived = signal.sigtimedwait({signal.SIGTERM}, 0) is not None
            else:   # macOS: it is pending, so this returns at once
                held.arrived = signal.sigwait({signal.SIGTERM}) == signal.SIGTERM
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def stop_tune_cleanly() -> bool:
    """Ask a running Tune fit to stop as on Ctrl+C (a clean stop with a snapshot),
    once: Tune's SIGINT handler puts the previous one back after it fires, and a
    second SIGINT would then end the fit at once, without its last snapshot.
    False when there is no Tune handler to ask (it has fired already)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        return False
    signal.raise_signal(signal.SIGINT)
    return True
