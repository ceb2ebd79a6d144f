"""Progress of a running study: one line when a trial ends, and a status line
(trials ended and running, best at the full budget, time left). On a terminal
the status line is redrawn in place every second; when output is not a
terminal (CI, ``ray job logs``, a file) it degrades to a plain line at most
every ``every_s`` seconds."""

from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Any, TextIO

from ray.tune import Callback

from studies.spec.direction import Direction
from studies.spec.rungs import Rungs

__all__ = ["ProgressLines", "Rungs", "expected_remaining_epochs"]


def expected_remaining_epochs(epoch: int, max_epochs: int, rungs: Rungs | None,
                              survival: dict[int, float] | None = None) -> float:
    """Epochs a trial now at ``epoch`` is still expected to run: surely to its
    next rung (the epochs where Ray's ASHA may stop it, ``Rungs.stopping_epochs``),
    then on past each rung with the chance ASHA promotes it
    (``survival[rung]`` where observed, else 1/reduction). Without rungs (no
    early stopping) every trial runs to ``max_epochs``."""
    if rungs is None:
        return float(max(0, max_epochs - epoch))
    ahead = [m for m in rungs.stopping_epochs if m > epoch] + [max_epochs]
    expected, reach, at = 0.0, 1.0, epoch
    for i, stop in enumerate(ahead):
        expected += reach * (stop - at)
        at = stop
        if i < len(ahead) - 1:
            reach *= (survival or {}).get(stop, 1.0 / rungs.reduction_factor)
    return expected


class ProgressLines(Callback):
    def __init__(self, *, metric: str, mode: str, num_samples: int, max_epochs: int, workers: int = 1,
                 rungs: Rungs | None = None, show_best: bool = True, every_s: float = 10.0,
                 stream: TextIO | None = None):
        self.metric, self.mode = metric, mode
        self.num_samples, self.max_epochs = num_samples, max_epochs
        self.workers, self.rungs, self.show_best = max(1, workers), rungs, show_best
        self.every_s = every_s
        self.stream = stream  # None: sys.stdout at print time (the callback is pickled with the run)
        self.start = time.time()
        self.last_print = 0.0
        self.best: tuple[float, str] | None = None   # best value at the full budget, and whose
        self.ended: dict[str, int] = {}
        self.ended_ids: set[str] = set()
        self.epochs_done = 0
        self.epoch_s: list[float] = []                # seconds of each trial-epoch reported
        self.busiest = 0                              # most trials seen running at once
        self.epoch_of: dict[str, int] = {}            # last epoch each trial reported
        self.reached: dict[int, int] = {}             # trials that reported each rung...
        self.passed: dict[int, int] = {}              # ...and those that went on past it

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        """Tune calls this when the experiment starts, a resumed one too: the
        clock counts from then, not from when the callback was first built."""
        self.start = time.time()

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
        return Direction(self.mode).better(value, self.best[0])

    @staticmethod
    def label(trial: Any) -> str:
        """A designed run is named by its config label and seed; a search trial by its id."""
        config = getattr(trial, "config", None) or {}
        if config.get("confirm_label"):
            return f"{config['confirm_label']} (seed {config.get('seed')})"
        return f"trial {trial.trial_id}"

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.epochs_done += 1
        epoch = int(result.get("epoch", result.get("training_iteration", 0)) or 0)
        previous = self.epoch_of.get(trial.trial_id, 0)
        if self.rungs is not None:
            for m in self.rungs.stopping_epochs:
                if previous == m and epoch > m:
                    self.passed[m] = self.passed.get(m, 0) + 1
                if previous < m <= epoch:
                    self.reached[m] = self.reached.get(m, 0) + 1
        self.epoch_of[trial.trial_id] = epoch
        seconds = result.get("time_this_iter_s")
        if isinstance(seconds, (int, float)) and math.isfinite(seconds):
            self.epoch_s.append(float(seconds))
        value = result.get(self.metric)
        # "Best" is the value at the full budget, as Optuna holds it, never a trial's best early epoch.
        if epoch >= self.max_epochs and isinstance(value, (int, float)) and math.isfinite(value) and self._better(value):
            self.best = (float(value), self.label(trial))

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
        self._print(f"{self.label(trial)} {how}, {self.metric}={shown}")
        self._status(trials, force=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._status(trials)

    def overhead_per_trial(self, started: int, now: float | None = None) -> float:
        """Worker time spent outside the trials' epochs (actor start, set-up,
        turnover, the searcher's suggestion), per trial started so far. For
        trials of a few milliseconds this is nearly all of a trial's cost."""
        slots = max(1, min(self.workers, self.busiest))
        outside = ((now if now is not None else time.time()) - self.start) * slots - sum(self.epoch_s)
        return max(0.0, outside) / max(1, started)

    def seconds_left(self, running: list[Any], now: float | None = None) -> float | None:
        """Remaining trial-epochs (running trials from where they are, unstarted
        ones from zero, each through ASHA's rungs) times the observed seconds
        per epoch, plus each unstarted trial's observed overhead, over the
        workers; never less than the longest single trial still has to go.
        None until a few epochs were timed on every worker."""
        done = len(self.ended_ids)
        self.busiest = max(self.busiest, len(running))
        if done < 1 or len(self.epoch_s) < 2 * self.workers:
            return None
        stops = self.rungs.stopping_epochs if self.rungs is not None else []
        survival = {m: self.passed.get(m, 0) / n for m, n in self.reached.items() if n >= 5 and m in stops}
        ahead = [expected_remaining_epochs(self.epoch_of.get(t.trial_id, 0), self.max_epochs, self.rungs, survival)
                 for t in running]
        unstarted = max(0, self.num_samples - done - len(running))
        fresh = expected_remaining_epochs(0, self.max_epochs, self.rungs, survival)
        per_epoch = statistics.median(self.epoch_s[-50 * self.workers:])
        overhead = self.overhead_per_trial(done + len(running), now)
        total = (sum(ahead) + unstarted * fresh) * per_epoch + unstarted * overhead
        longest = max([a * per_epoch for a in ahead] + [fresh * per_epoch + overhead if unstarted else 0.0])
        return max(total / self.workers, longest)

    def _status(self, trials: list, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last_print < (1.0 if self._live() else self.every_s):
            return
        self.last_print = now
        running = [t for t in trials if t.status == "RUNNING" and t.trial_id not in self.ended_ids]
        done = sum(self.ended.values())
        text = f"{done}/{self.num_samples} trials ended, {len(running)} running, {self.epochs_done} trial-epochs"
        if self.show_best:
            text += (f"; best {self.metric} at {self.max_epochs} epochs={self.best[0]:.4g} ({self.best[1]})" if self.best
                     else f"; no trial at {self.max_epochs} epochs yet")
        left = self.seconds_left(running) if done < self.num_samples else None
        if left is not None:
            text += f"; ~{left:.0f} s left"
        self._print(text, status=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._live():
            (self.stream or sys.stdout).write("\n")
