"""A trial that never reports the study's metric fails alone; the study goes on.

Tune's own check (a TuneError that ends the whole study at the first such
result) is switched off around the fit; instead this stopper ends just that
trial at its first result without a number for the metric, and the trials
table names the reason (studies.runs.trials). The searcher records it as
FAIL in Optuna, since it reported no value.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Stopper

# Tune reads this around each result: 1 leaves a missing metric to us.
LENIENT_METRICS_ENV = {"TUNE_DISABLE_STRICT_METRIC_CHECKING": "1"}


def has_number(result: dict[str, Any], metric: str) -> bool:
    value = result.get(metric)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(float(value))


class StopWithoutMetric(Stopper):
    """Stop a trial whose result has no number for ``metric`` (or, for several
    objectives, for any of them); a module-level class: Tune pickles the
    stopper with the experiment."""

    def __init__(self, metric: str | list[str]):
        self.metric = metric

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        return not all(has_number(result, m) for m in metrics)

    def stop_all(self) -> bool:
        return False
