"""The status a trial gets in the tables when Optuna's record and Tune's
snapshot disagree after a resume (studies/runs/trials.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from studies.runs.trials import STATUS_COMPLETE, STATUS_FAILED, STATUS_ORPHANED, STATUS_PRUNED, TuneTrial, _table


def _row(tmp_path: Path, epochs: int, *, optuna_state: str, tune_status: str, metric: str = "loss", error: str = "") -> dict:
    t = TuneTrial(tmp_path / "trial_a", "a", {"x": 1.0}, {e: {"epoch": e, metric: 1.0 / e} for e in range(1, epochs + 1)}, error)
    ot = SimpleNamespace(state=SimpleNamespace(name=optuna_state), user_attrs={}, params={"x": 1.0}, number=0)
    run = _table([t], {"a": ot}, metric="loss", mode="min", params=["x"], max_epochs=4, run_active=False,
                 tune_status={"a": tune_status})
    return run.trials.iloc[0].to_dict()


def test_a_failed_trial_retried_after_a_resume_and_stopped_by_asha(tmp_path: Path) -> None:
    row = _row(tmp_path, 1, optuna_state="FAIL", tune_status="TERMINATED", error="RayActorError: the actor died")
    assert row["status"] == STATUS_PRUNED and row["error"] == "recovered from: RayActorError: the actor died"
    assert _row(tmp_path, 4, optuna_state="FAIL", tune_status="TERMINATED", error="x")["status"] == STATUS_COMPLETE


def test_a_trial_that_really_failed_stays_failed(tmp_path: Path) -> None:
    assert _row(tmp_path, 1, optuna_state="FAIL", tune_status="ERROR", error="ValueError: no")["status"] == STATUS_FAILED
    # stopped by the metric check (TERMINATED, told FAIL): it never reported the metric
    row = _row(tmp_path, 1, optuna_state="FAIL", tune_status="TERMINATED", metric="los")
    assert row["status"] == STATUS_FAILED and row["error"].startswith("never reported the study's metric `loss`")


def test_a_trial_that_returned_without_reporting(tmp_path: Path) -> None:
    row = _row(tmp_path, 0, optuna_state="FAIL", tune_status="TERMINATED")
    assert row["status"] == STATUS_FAILED and row["error"].startswith("ended without reporting a result")


def test_a_trial_folder_neither_the_snapshot_nor_optuna_knows_is_lost(tmp_path: Path) -> None:
    """A killed driver's trial that ran past the snapshot the run resumed from (its
    files reached the bucket, its record did not): not one of the study's trials."""
    known = TuneTrial(tmp_path / "trial_a", "a", {"x": 1.0}, {e: {"epoch": e, "loss": 1.0 / e} for e in range(1, 5)}, "")
    forgotten = TuneTrial(tmp_path / "trial_b", "b", {"x": 2.0}, {e: {"epoch": e, "loss": 1.0 / e} for e in range(1, 5)}, "")
    ot = SimpleNamespace(state=SimpleNamespace(name="COMPLETE"), user_attrs={}, params={"x": 1.0}, number=0)
    run = _table([known, forgotten], {"a": ot}, metric="loss", mode="min", params=["x"], max_epochs=4,
                 run_active=False, tune_status={"a": "TERMINATED"})
    assert dict(zip(run.trials["trial_id"], run.trials["status"], strict=True)) == {"a": STATUS_COMPLETE, "b": STATUS_ORPHANED}
    # While the driver runs, a trial newer than the last snapshot is simply running, not lost.
    live = _table([known, forgotten], {"a": ot}, metric="loss", mode="min", params=["x"], max_epochs=4,
                  run_active=True, tune_status={"a": "TERMINATED"})
    assert STATUS_ORPHANED not in set(live.trials["status"])
