"""Tune's SearchGenerator, with its trial count taken from the trial states on resume.

Tune writes one snapshot as several files (``experiment_state-*.json`` with the
trials, then the searcher's pickle, then ``search_gen_state-*.json`` with the
count of trials made) and copies them to the run folder, or a bucket, one by one
in a background thread. A driver killed, or a disk that fills, between two of
those files leaves a count from another snapshot than the trial list: restored,
the generator then makes one trial too many (the count is older) or one too few
(the count is newer). The trial list is the one Tune resumes, so the count is
made to match it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint
from ray.tune.search import SearchGenerator


def trials_in_snapshot(dirpath: str | Path) -> int | None:
    """How many trials the newest experiment state in ``dirpath`` holds (None: no state there)."""
    newest = _find_newest_experiment_checkpoint(str(dirpath))
    if newest is None:
        return None
    try:
        return len(json.loads(Path(newest).read_text())["trial_data"])
    except (OSError, ValueError, KeyError, TypeError):
        return None   # Tune itself refuses a state it cannot read, before we get here


class TrialCountedGenerator(SearchGenerator):
    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        made = trials_in_snapshot(dirpath)
        if made is not None:
            self._counter = made
            if made < self._total_samples:
                self._finished = False   # a newer count's "no more trials" is not this list's
