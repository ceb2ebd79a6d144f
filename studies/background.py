"""Driver threads that end by themselves (Ray's shutdown overlapping the report,
the imports made while Ray starts): started through ``ending_thread`` so that the
report, which forks, can wait for exactly these before it does."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class EndingThread(threading.Thread):
    """A thread that ends by itself, soon; ``wait_for_ending_threads`` joins it."""


def ending_thread(target: Callable[..., Any], name: str) -> EndingThread:
    thread = EndingThread(target=target, name=name)
    thread.start()
    return thread


def ending_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, EndingThread) and t is not threading.current_thread()]


def wait_for_ending_threads() -> None:
    for thread in ending_threads():
        thread.join()
