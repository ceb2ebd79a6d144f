"""run.json's platform record: this checkout's version, commit and dirty flag,
wherever the spec lives."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from studies.runs import run_folder
from studies.runs.optuna_store import trial_seed


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def test_commit_and_dirty_flag_of_a_checkout(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-qm", "one")
    clean = run_folder.platform_version(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert run_folder.platform_version(tmp_path) == {**clean, "dirty": True}


def test_a_copy_without_git_takes_the_shipped_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(run_folder.COMMIT_ENV, raising=False)
    assert run_folder.platform_version(tmp_path)["commit"] is None
    monkeypatch.setenv(run_folder.COMMIT_ENV, "abc123")
    monkeypatch.delenv(run_folder.DIRTY_ENV, raising=False)
    got = run_folder.platform_version(tmp_path)
    assert got["commit"] == "abc123" and got["dirty"] is None
    monkeypatch.setenv(run_folder.DIRTY_ENV, "1")
    assert run_folder.platform_version(tmp_path)["dirty"] is True
    monkeypatch.setenv(run_folder.DIRTY_ENV, "0")
    assert run_folder.platform_version(tmp_path)["dirty"] is False


def test_the_platform_record_is_this_checkouts() -> None:
    got = run_folder.platform_version()
    head = subprocess.run(["git", "-C", str(run_folder.PLATFORM_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert got["commit"] == head.stdout.strip()


def test_trial_seeds_are_reproducible_and_distinct() -> None:
    seeds = [trial_seed(0, n) for n in range(200)]
    assert seeds == [trial_seed(0, n) for n in range(200)]
    assert len(set(seeds)) == 200
    assert trial_seed(1, 0) != trial_seed(0, 0)


def test_run_info_reads_an_older_run_and_round_trips(tmp_path: Path) -> None:
    """A run.json from before stage_s / trial_counts still reads; its stages come from wall_s and confirm_wall_s."""
    (tmp_path / "run.json").write_text('{"study": "mdn_ramp", "run": "old", "status": "finished", "started": 5, '
                                       '"invocation": {"smoke": true, "data": "d.h5"}, "wall_s": 100, "confirm_wall_s": 40}')
    info = run_folder.read_run_info(tmp_path)
    assert (info.study, info.invocation.smoke, info.invocation.data, info.invocation.overrides) == ("mdn_ramp", True, "d.h5", [])
    assert info.stages() == {"search": 100, "designed": 40}
    info = run_folder.update_run_info(tmp_path, stage_s={"search": 90.0, "report": 5.0}, trial_counts={"complete": 3})
    again = run_folder.read_run_info(tmp_path)
    assert again == info and again.stages() == {"search": 90.0, "report": 5.0}


def test_the_designed_stage_has_one_name_and_older_runs_still_read(tmp_path: Path) -> None:
    """Folder designed/, run.json designed_overrides, flag --designed; a run from before
    keeps its confirm/ folder and confirm_overrides, and --confirm still parses."""
    from studies.cli import build_parser
    from studies.runs.run_folder import RunFolder

    assert RunFolder(tmp_path).designed == tmp_path / "designed"
    (tmp_path / "confirm").mkdir()
    assert RunFolder(tmp_path).designed == tmp_path / "confirm"
    (tmp_path / "run.json").write_text('{"study": "s", "run": "r", "confirm_overrides": ["ablation.confirm.seeds=2"]}')
    info = run_folder.read_run_info(tmp_path)
    assert info.designed_overrides == ["ablation.confirm.seeds=2"] and "confirm_overrides" not in info.to_dict()
    assert build_parser().parse_args(["mdn_ramp", "--confirm"]).designed
    assert build_parser().parse_args(["mdn_ramp", "--designed"]).designed
    assert not build_parser().parse_args(["mdn_ramp"]).designed


def test_run_info_refuses_unknown_keys_in_the_file_and_in_updates(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text('{"study": "s", "run": "r", "statsu": "finished"}')
    with pytest.raises(run_folder.UserError, match=r"run.json: corrupt run file \(unknown key 'statsu'\)"):
        run_folder.read_run_info(tmp_path)
    (tmp_path / "run.json").write_text('{"study": "s", "run": "r"}')
    with pytest.raises(TypeError, match="statsu"):
        run_folder.update_run_info(tmp_path, statsu="finished")
    assert run_folder.read_run_info(tmp_path).status == "?"   # nothing written
