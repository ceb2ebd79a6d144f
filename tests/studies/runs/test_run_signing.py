"""Digests kept per file (studies/runs/run_signing.py): the run folder's content and
a staged copy on its way in both pass; anything else is refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from studies.errors import UserError
from studies.runs.run_signing import KEEP_DIGESTS, check_run_folder, sign_run_folder


def test_a_snapshot_in_flight_passes_whichever_copy_is_on_disk(tmp_path: Path) -> None:
    run, staging = tmp_path / "run", tmp_path / "staging"
    run.mkdir(), staging.mkdir()
    key = b"k" * 32
    (run / "searcher-state-s.pkl").write_bytes(b"old")
    sign_run_folder(run, key)
    (staging / "searcher-state-s.pkl").write_bytes(b"new")
    sign_run_folder(run, key, sources=staging)   # signed before Tune copies it in
    check_run_folder(run, key)                     # the old copy still there
    (run / "searcher-state-s.pkl").write_bytes(b"new")
    check_run_folder(run, key)                     # the new one arrived
    (run / "searcher-state-s.pkl").write_bytes(b"planted")
    with pytest.raises(UserError, match="searcher-state-s.pkl: not signed by this user's key"):
        check_run_folder(run, key)
    with pytest.raises(UserError, match="not signed"):
        (run / "searcher-state-s.pkl").write_bytes(b"new")
        check_run_folder(run, b"x" * 32)           # another user's key


def test_only_the_last_few_versions_are_kept(tmp_path: Path) -> None:
    key = b"k" * 32
    path = tmp_path / "tuner.pkl"
    for i in range(KEEP_DIGESTS + 1):
        path.write_bytes(bytes([i]))
        sign_run_folder(tmp_path, key)
    path.write_bytes(bytes([0]))
    with pytest.raises(UserError):
        check_run_folder(tmp_path, key)


def test_callback_state_must_be_plain_data(tmp_path: Path) -> None:
    (tmp_path / "callback-states-s.pkl").write_bytes(pickle.dumps({0: None, 2: {"asha_rungs": [[(4, {"t": -1.5})]]}}))
    check_run_folder(tmp_path, b"k" * 32)
    (tmp_path / "callback-states-s.pkl").write_bytes(pickle.dumps({0: Path("x")}))
    with pytest.raises(UserError, match=r"holds more than plain data \(refers to pathlib"):
        check_run_folder(tmp_path, b"k" * 32)


def test_unsigned_folder_says_so(tmp_path: Path) -> None:
    (tmp_path / "tuner.pkl").write_bytes(b"x")
    with pytest.raises(UserError, match="tuner.pkl: no signatures"):
        check_run_folder(tmp_path, b"k" * 32)


def test_the_key_is_made_once_whole_and_a_short_one_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studies.errors import UserError
    from studies.runs import run_signing

    monkeypatch.setattr(run_signing, "default_key_file", lambda: tmp_path / "keys" / "run-signing.key")
    key = run_signing.signing_key()
    assert len(key) == 32 and run_signing.signing_key() == key
    path = tmp_path / "keys" / "run-signing.key"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and [p.name for p in path.parent.iterdir()] == [path.name]
    for bad in ("", "abcd", "zz" * 32):   # empty (a driver killed while making it), short, not hex
        path.write_text(bad)
        with pytest.raises(UserError, match="not a run-signing key"):
            run_signing.signing_key()


def test_drivers_making_the_key_at_once_agree_on_it(tmp_path: Path) -> None:
    """Eight processes start at the same moment with no key: all sign with the same one."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from studies.runs import run_signing; "
            f"run_signing.default_key_file = lambda: Path({str(tmp_path / 'run-signing.key')!r}); "
            "print(run_signing.signing_key().hex())")
    repo = Path(__file__).resolve().parents[3]
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=repo, stdout=subprocess.PIPE, text=True) for _ in range(8)]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(keys) == 1 and len(keys.pop()) == 64
