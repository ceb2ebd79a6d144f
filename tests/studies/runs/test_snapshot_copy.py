"""The run's whole copy of Tune's last snapshot (studies.runs.snapshot_copy), on files written here."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from studies.errors import UserError
from studies.runs.run_signing import sign_run_folder
from studies.runs.snapshot_copy import COPY_DIR, check_snapshot_whole, keep_copy, put_back_damaged

KEY = b"k" * 32


def _snapshot(folder: Path, n: int) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "experiment_state-s.json").write_text(json.dumps({"trials": n}))
    (folder / "searcher-state-s.pkl").write_bytes(pickle.dumps({"told": n}))
    (folder / "search_gen_state-s.json").write_bytes(pickle.dumps({"counter": n}))


def _as_tune_does(run_dir: Path, staging: Path, n: int) -> None:
    """Snapshot n: written to staging, signed and copied (RunSigner), then copied into the run folder."""
    _snapshot(staging, n)
    sign_run_folder(run_dir, KEY, sources=staging)
    keep_copy(run_dir, staging)
    for f in staging.iterdir():
        shutil.copyfile(f, run_dir / f.name)


def test_a_file_cut_short_brings_back_the_whole_snapshot_of_one_moment(tmp_path: Path) -> None:
    run_dir, staging = tmp_path / "run", tmp_path / "staging"
    run_dir.mkdir()
    _as_tune_does(run_dir, staging, 1)
    _snapshot(staging, 2)   # snapshot 2: signed and copied, then the kill lands during Tune's copy
    sign_run_folder(run_dir, KEY, sources=staging)
    keep_copy(run_dir, staging)
    shutil.copyfile(staging / "experiment_state-s.json", run_dir / "experiment_state-s.json")
    (run_dir / "searcher-state-s.pkl").write_bytes(pickle.dumps({"told": 2})[:5])   # cut short
    with pytest.raises(UserError, match="searcher-state-s.pkl: empty or cut short"):
        check_snapshot_whole(run_dir)
    assert sorted(put_back_damaged(run_dir, KEY)) == ["search_gen_state-s.json", "searcher-state-s.pkl"]
    assert pickle.loads((run_dir / "searcher-state-s.pkl").read_bytes()) == {"told": 2}
    assert pickle.loads((run_dir / "search_gen_state-s.json").read_bytes()) == {"counter": 2}   # one moment, not two
    check_snapshot_whole(run_dir)
    assert put_back_damaged(run_dir, KEY) == []   # nothing damaged: nothing touched


def test_a_copy_the_kill_cut_short_is_never_used(tmp_path: Path) -> None:
    run_dir, staging = tmp_path / "run", tmp_path / "staging"
    run_dir.mkdir()
    _as_tune_does(run_dir, staging, 1)
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
