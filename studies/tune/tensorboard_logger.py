"""Ray Tune's TensorBoard logger, per-epoch scalars only.

Tune's default TBXLoggerCallback also writes an HParams session into each
trial folder when the trial ends; ``studies.report.tensorboard_hparams``
writes the run's own under ``hparams/<trial_id>``, so with both each trial
showed twice in TensorBoard's HParams dashboard (and Tune's rows had no
values under the ablation's metrics). Passed in ``RunConfig(callbacks=...)``,
this stands in for the default logger: Tune adds that one only when no
instance of its class is given.
"""

from __future__ import annotations

from typing import Any

from ray.tune.logger import TBXLoggerCallback


class TBXScalarsCallback(TBXLoggerCallback):
    def _try_log_hparams(self, trial: Any, result: dict) -> None:
        pass
