"""What a study prints when it ends: counts, stage times, the best trial at the
full budget, where things are, and the answer with its path last."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studies.runs.run_folder import RunFolder, RunInfo

if TYPE_CHECKING:   # the report's imports (pandas, scipy, matplotlib) stay out of --runs
    from studies.report.write import WrittenReport
    from studies.runs.trials import RunTrials
    from studies.spec.study import StudySpec

STAGE_NAMES = {"search": "search", "designed": "designed runs", "report": "report"}


def stage_summary(info: RunInfo) -> str:
    """``236 s (search 134 s, designed runs 91 s, report 11 s)``."""
    stages = info.stages()
    parts = ", ".join(f"{STAGE_NAMES[k]} {stages[k]:.0f} s" for k in STAGE_NAMES if k in stages)
    return f"{sum(stages.values()):.0f} s ({parts})"


def print_summary(spec: StudySpec, folder: RunFolder, trials: RunTrials, written: WrittenReport, status: str, *,
                  verbose: bool = False, bucket: str | None = None) -> None:
    """``bucket``: the run folder's URI when it lives in a bucket (``folder`` is then its local mirror)."""
    from studies.report.answer import best_trial

    df = trials.trials
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    for line in written.unreadable:
        print(f"warning: {line}", file=sys.stderr)
    print(f"\n{spec.name} {status} in {stage_summary(folder.info())}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    best = None if spec.multi_objective else best_trial(trials, spec.metric, spec.mode)
    if spec.multi_objective:  # several objectives have no single best: the answer below names the front
        pass
    elif best is not None:  # the value at the full budget, as Optuna holds it (not a trial's best epoch)
        params = ", ".join(f"{p}={_fmt(best[p])}" for p in trials.params if best[p] is not None and best[p] == best[p])
        print(f"best {spec.metric} at the full budget = {best[f'last_{spec.metric}']:.5g} "
              f"(trial {best['trial_id']}, {best['epochs']} epochs): {params}")
    elif not df.empty:
        print(f"no trial ran the full {spec.budget.max_epochs} epochs yet")
    if bucket is not None:
        print(f"run folder:   {bucket}")
        print(f"local mirror: {folder.path}")
    else:
        print(f"run folder:   {folder.path}")
    print(f"optuna study: {folder.optuna_url}")
    print(f"tensorboard:  tensorboard --logdir {folder.path}")
    print_files(written.files, folder.path, verbose=verbose)
    print_answer(written)


def print_files(files: list[Path], run_dir: Path, *, verbose: bool) -> None:
    if verbose:
        for path in files:
            print(f"wrote         {path}")
    else:
        print(f"wrote {len(files)} tables, plots and logs under {run_dir} (list them with --verbose)")


def print_answer(written: WrittenReport, width: int = 100) -> None:
    """One claim per paragraph, then the path of tables/ablation.md: last, so it is what a user sees."""
    print()
    for i, part in enumerate(written.answer):
        bullet = "" if i == 0 else "- "
        print(textwrap.fill(part, width=width, break_on_hyphens=False, initial_indent=bullet,
                            subsequent_indent=" " * len(bullet)))
        print()
    print(f"answer and tables: {written.path}")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
