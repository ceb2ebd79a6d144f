"""Progress of a running study: one line when a trial ends, and a status line
(trials ended and running, best so far, ETA). On a terminal the status line
is redrawn in place every second; when output is not a terminal (CI, ``ray job
logs``, a file) it degrades to a plain line at most every ``every_s`` seconds."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from ray.tune import Callback


class ProgressLines(Callback):
    def __init__(self, *, metric: str, mode: str, num_samples: int, max_epochs: int, every_s: float = 10.0, stream: TextIO | None = None):
        self.metric, self.mode = metric, mode
        self.num_samples, self.max_epochs = num_samples, max_epochs
        self.every_s = every_s
        self.stream = stream  # None: sys.stdout at print time (the callback is pickled with the run)
        self.start = time.time()
        self.last_print = 0.0
        self.best: tuple[float, str] | None = None
        self.ended: dict[str, int] = {}
        self.ended_ids: set[str] = set()
        self.epochs_done = 0

    def _live(self) -> bool:
        stream = self.stream or sys.stdout
        return bool(getattr(stream, "isatty", lambda: False)())

    def _print(self, text: str, *, status: bool = False) -> None:
        stream = self.stream or sys.stdout
        line = f"[{time.time() - self.start:6.0f} s] {text}"
        if self._live():
            # Clear the live status line, then print; a status line stays open for the next redraw.
            stream.write("\r\033[K" + line + ("" if status else "\n"))
            stream.flush()
        else:
            print(line, file=stream, flush=True)

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best[0] if self.mode == "min" else value > self.best[0]

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.epochs_done += 1
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and self._better(value):
            self.best = (float(value), trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epochs = int((trial.last_result or {}).get("epoch", 0))
        how = "complete" if epochs >= self.max_epochs else "stopped by ASHA"
        self._end(trial, f"{how} after {epochs} epochs", trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "failed", trials)

    def _end(self, trial: Any, how: str, trials: list) -> None:
        self.ended_ids.add(trial.trial_id)
        self.ended[how.split(" after")[0]] = self.ended.get(how.split(" after")[0], 0) + 1
        value = (trial.last_result or {}).get(self.metric)
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else "-"
        self._print(f"trial {trial.trial_id} {how}, {self.metric}={shown}")
        self._status(trials, force=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._status(trials)

    def _status(self, trials: list, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last_print < (1.0 if self._live() else self.every_s):
            return
        self.last_print = now
        running = sum(1 for t in trials if t.status == "RUNNING" and t.trial_id not in self.ended_ids)
        done = sum(self.ended.values())
        best = f"best {self.metric}={self.best[0]:.4g} (trial {self.best[1]})" if self.best else "no result yet"
        elapsed = now - self.start
        eta = ""
        if 0 < done < self.num_samples:
            eta = f", ~{elapsed / done * (self.num_samples - done):.0f} s left at this pace"
        self._print(f"{done}/{self.num_samples} trials ended, {running} running, {self.epochs_done} trial-epochs; {best}{eta}",
                    status=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._live():
            (self.stream or sys.stdout).write("\n")
