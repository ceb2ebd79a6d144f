"""The run's whole copy of Tune's last snapshot (studies.runs.snapshot_copy), on files written here."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from studies.errors import UserError
from studies.runs import snapshot_copy
from studies.runs.run_signing import sign_run_folder
from studies.runs.snapshot_copy import COPY_DIR, WHOLE_MARK, check_snapshot_whole, keep_copy, put_back_damaged

KEY = b"k" * 32


def _snapshot(folder: Path, n: int) -> None:
    """Snapshot n: its state files, and trial k (1..n) with k..n results (each trial's files only grow)."""
    folder.mkdir(exist_ok=True)
    (folder / "experiment_state-s.json").write_text(json.dumps({"trials": n}))
    (folder / "searcher-state-s.pkl").write_bytes(pickle.dumps({"told": n}))
    (folder / "search_gen_state-s.json").write_bytes(pickle.dumps({"counter": n}))
    for k in range(1, n + 1):
        trial = folder / f"trial_{k}"
        trial.mkdir(exist_ok=True)
        if not (trial / "params.json").exists():   # written once, when the trial starts
            (trial / "params.json").write_text(json.dumps({"k": k}))
        (trial / "result.json").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in range(1, n - k + 2)))


def _copy_into(run_dir: Path, staging: Path, only: tuple[str, ...] = ()) -> None:
    """Tune's copy of the staging folder into the run folder (``only``: the names it reached before a kill)."""
    for f in staging.rglob("*"):
        rel = f.relative_to(staging)
        if f.is_file() and (not only or str(rel) in only):
            (run_dir / rel).parent.mkdir(exist_ok=True)
            shutil.copyfile(f, run_dir / rel)


def _as_tune_does(run_dir: Path, staging: Path, n: int) -> None:
    """Snapshot n: written to staging, signed and copied (RunSigner), then copied into the run folder."""
    _snapshot(staging, n)
    sign_run_folder(run_dir, KEY, sources=staging)
    keep_copy(run_dir, staging, KEY)
    _copy_into(run_dir, staging)


def test_a_file_cut_short_brings_back_the_whole_snapshot_of_one_moment(tmp_path: Path) -> None:
    run_dir, staging = tmp_path / "run", tmp_path / "staging"
    run_dir.mkdir()
    _as_tune_does(run_dir, staging, 1)
    _snapshot(staging, 2)   # snapshot 2: signed and copied, then the kill lands during Tune's copy
    sign_run_folder(run_dir, KEY, sources=staging)
    keep_copy(run_dir, staging, KEY)
    shutil.copyfile(staging / "experiment_state-s.json", run_dir / "experiment_state-s.json")
    (run_dir / "searcher-state-s.pkl").write_bytes(pickle.dumps({"told": 2})[:5])   # cut short
    with pytest.raises(UserError, match="searcher-state-s.pkl: empty or cut short"):
        check_snapshot_whole(run_dir)
    assert sorted(put_back_damaged(run_dir, KEY)) == [
        "search_gen_state-s.json", "searcher-state-s.pkl", "trial_1/result.json", "trial_2/params.json",
        "trial_2/result.json"]
    assert pickle.loads((run_dir / "searcher-state-s.pkl").read_bytes()) == {"told": 2}
    assert pickle.loads((run_dir / "search_gen_state-s.json").read_bytes()) == {"counter": 2}   # one moment, not two
    for f in staging.rglob("*"):   # the trials' files too: snapshot 2's, the trial it started included
        assert f.is_dir() or (run_dir / f.relative_to(staging)).read_bytes() == f.read_bytes(), f
    check_snapshot_whole(run_dir)
    assert put_back_damaged(run_dir, KEY) == []   # nothing damaged: nothing touched


def test_a_copy_the_kill_cut_short_is_never_used(tmp_path: Path) -> None:
    run_dir, staging = tmp_path / "run", tmp_path / "staging"
    run_dir.mkdir()
    _as_tune_does(run_dir, staging, 1)
    _snapshot(staging, 2)
    sign_run_folder(run_dir, KEY, sources=staging)
    shutil.rmtree(run_dir / COPY_DIR)
    (run_dir / f"{COPY_DIR}.new").mkdir()   # killed while copying: no mark of a whole copy
    shutil.copyfile(staging / "searcher-state-s.pkl", run_dir / f"{COPY_DIR}.new" / "searcher-state-s.pkl")
    (run_dir / "searcher-state-s.pkl").write_bytes(b"")
    assert put_back_damaged(run_dir, KEY) == []
    with pytest.raises(UserError, match="holds no whole copy of it; the run cannot be continued"):
        check_snapshot_whole(run_dir)


def test_a_whole_file_someone_changed_is_left_for_the_signature_check(tmp_path: Path) -> None:
    """Putting it back would hide that someone else wrote into the run folder: only files cut short are put back."""
    run_dir, staging = tmp_path / "run", tmp_path / "staging"
    run_dir.mkdir()
    _as_tune_does(run_dir, staging, 1)
    planted = pickle.dumps({"told": "planted"})
    (run_dir / "searcher-state-s.pkl").write_bytes(planted)
    assert put_back_damaged(run_dir, KEY) == []
    (run_dir / "experiment_state-s.json").write_text("")   # and another file cut short beside it
    assert put_back_damaged(run_dir, KEY) == []
    assert (run_dir / "searcher-state-s.pkl").read_bytes() == planted


def test_a_kill_after_some_files_of_a_snapshot_brings_back_all_of_it(tmp_path: Path) -> None:
    """Nothing cut short, but the state of snapshot 3 beside trial files of 2 (pyarrow copies in no set order)."""
    run_dir, staging = tmp_path / "run", tmp_path / "staging"
    run_dir.mkdir()
    _as_tune_does(run_dir, staging, 2)
    _snapshot(staging, 3)
    sign_run_folder(run_dir, KEY, sources=staging)
    keep_copy(run_dir, staging, KEY)
    _copy_into(run_dir, staging, only=("experiment_state-s.json", "searcher-state-s.pkl", "trial_1/result.json"))
    with (run_dir / "trial_1" / "result.json").open("a") as f:   # copied after the copy was kept: more, kept
        f.write(json.dumps({"epoch": 4}) + "\n")
    assert sorted(put_back_damaged(run_dir, KEY)) == [
        "search_gen_state-s.json", "trial_2/result.json", "trial_3/params.json", "trial_3/result.json"]
    assert pickle.loads((run_dir / "search_gen_state-s.json").read_bytes()) == {"counter": 3}
    assert (run_dir / "trial_1" / "result.json").read_text().count("epoch") == 4
    assert put_back_damaged(run_dir, KEY) == []


def test_trial_files_unchanged_since_the_last_copy_are_linked_not_copied(tmp_path: Path) -> None:
    run_dir, staging = tmp_path / "run", tmp_path / "staging"
    run_dir.mkdir()
    _as_tune_does(run_dir, staging, 2)
    params = (run_dir / COPY_DIR / "trial_1" / "params.json").stat()
    results = (run_dir / COPY_DIR / "trial_1" / "result.json").stat()
    _as_tune_does(run_dir, staging, 3)   # trial 1's params unchanged, its results grown
    assert (run_dir / COPY_DIR / "trial_1" / "params.json").stat().st_ino == params.st_ino
    assert (run_dir / COPY_DIR / "trial_1" / "result.json").stat().st_ino != results.st_ino
    assert not (run_dir / f"{COPY_DIR}.old").exists() and not (run_dir / f"{COPY_DIR}.new").exists()


def test_a_trial_file_changed_in_the_copy_is_never_put_back(tmp_path: Path) -> None:
    """Only bytes this user's key signed: a trial file in the copy that someone else wrote stays out."""
    run_dir, staging = tmp_path / "run", tmp_path / "staging"
    run_dir.mkdir()
    _as_tune_does(run_dir, staging, 1)
    _snapshot(staging, 2)
    sign_run_folder(run_dir, KEY, sources=staging)
    keep_copy(run_dir, staging, KEY)
    (run_dir / COPY_DIR / "trial_2" / "params.json").write_text(json.dumps({"k": "planted"}))
    (run_dir / COPY_DIR / "trial_9").mkdir()
    (run_dir / COPY_DIR / "trial_9" / "params.pkl").write_bytes(pickle.dumps("planted"))
    (run_dir / "experiment_state-s.json").write_bytes(b"")
    restored = put_back_damaged(run_dir, KEY)
    assert "experiment_state-s.json" in restored and "trial_2/result.json" in restored
    assert "trial_2/params.json" not in restored and not (run_dir / "trial_2" / "params.json").exists()
    assert not (run_dir / "trial_9").exists()


def test_a_copy_that_cannot_be_made_leaves_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older snapshot put back would take the run back past what the run folder holds."""
    run_dir, staging = tmp_path / "run", tmp_path / "staging"
    run_dir.mkdir()
    _as_tune_does(run_dir, staging, 1)
    assert (run_dir / COPY_DIR / WHOLE_MARK).is_file()
    _snapshot(staging, 2)
    copyfile = shutil.copyfile

    def no_space(source: Path, target: Path) -> None:
        if Path(source).name == "result.json":
            raise OSError(28, "No space left on device")
        copyfile(source, target)

    monkeypatch.setattr(snapshot_copy.shutil, "copyfile", no_space)
    keep_copy(run_dir, staging, KEY)   # never fails the snapshot
    assert not any(run_dir.glob(f"{COPY_DIR}*"))
