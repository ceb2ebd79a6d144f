"""The mirror of a run folder in a bucket (studies/runs/remote_storage.py), on pyarrow's
local file system standing in for the bucket: what is pulled, what is pushed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from studies.errors import UserError
from studies.runs.remote_storage import RemoteStore, own_files, stage_own_files


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RemoteStore:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "bucket").mkdir()
    return RemoteStore.from_uri(f"file://{tmp_path / 'bucket'}/prefix")


def _write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_mirror_is_under_home_and_maps_back_to_the_bucket(store: RemoteStore, tmp_path: Path) -> None:
    assert store.mirror == tmp_path / "home/.cache/raystudies/remote/local" / store.root.lstrip("/")
    run = store.mirror / "study" / "r1"
    assert store.on_bucket(run) == f"{store.root}/study/r1"
    assert store.uri_for(run) == f"{store.uri}/study/r1"
    assert store.tune_storage(run.parent) == {"storage_path": f"{store.root}/study", "storage_filesystem": store.fs}


def test_pull_skips_checkpoints_and_filters_by_name(store: RemoteStore, tmp_path: Path) -> None:
    bucket_run = Path(store.root) / "study" / "r1"
    _write(bucket_run / "run.json", "{}")
    _write(bucket_run / "trial_a" / "result.json", "{}")
    _write(bucket_run / "trial_a" / "checkpoint_000001" / "checkpoint.pt", "weights")
    only = store.pull("study", only=("run.json",))
    assert sorted(p.relative_to(only).as_posix() for p in only.rglob("*") if p.is_file()) == ["r1/run.json"]
    full = store.pull("study", "r1")
    assert sorted(p.relative_to(full).as_posix() for p in full.rglob("*") if p.is_file()) == ["run.json", "trial_a/result.json"]
    assert store.listdir("study") == ["r1"] and store.listdir("nothing") == []


def test_only_the_drivers_own_files_are_pushed(store: RemoteStore) -> None:
    run = store.mirror / "study" / "r1"
    ours = [_write(run / n) for n in ("run.json", "spec.yaml", ".signatures.json", "tables/trials.md", "plots/a.png",
                                      "trial_a/stalled.txt", "confirm/candidates.json")]
    tunes = [_write(run / n) for n in ("tuner.pkl", "experiment_state-1.json", "trial_a/result.json",
                                       "confirm/experiment_state-2.json")]
    assert sorted(own_files(run)) == sorted(ours)
    assert sorted(own_files(run, report_only=True)) == sorted(p for p in ours if p.parent.name in ("tables", "plots"))
    store.push_own(run)
    bucket_run = Path(store.root) / "study" / "r1"
    assert sorted(p.relative_to(bucket_run) for p in bucket_run.rglob("*") if p.is_file()) == \
        sorted(p.relative_to(run) for p in ours)
    assert not any((bucket_run / p.relative_to(run)).exists() for p in tunes)


def test_the_optuna_study_is_staged_as_a_whole_sqlite_copy(store: RemoteStore, tmp_path: Path) -> None:
    run = store.mirror / "study" / "r1"
    run.mkdir(parents=True)
    db = sqlite3.connect(run / "optuna.db")
    db.execute("create table t (x integer)")
    db.execute("insert into t values (1), (2)")
    db.commit()
    db.execute("insert into t values (3)")   # not committed: the copy holds what was committed
    staging = tmp_path / "staging"
    stage_own_files(run, staging)
    copy = sqlite3.connect(staging / "optuna.db")
    assert copy.execute("select count(*) from t").fetchone() == (2,)
    copy.close()
    db.close()


def test_a_uri_without_a_bucket_or_of_an_unknown_kind_is_one_line() -> None:
    with pytest.raises(UserError, match="names no bucket; expected s3://BUCKET/PREFIX"):
        RemoteStore.from_uri("s3://")
    with pytest.raises(UserError, match="not a storage URI pyarrow can open"):
        RemoteStore.from_uri("nosuch://bucket/x")


def test_pull_keeps_the_mirrors_signatures_beside_the_buckets(store: RemoteStore) -> None:
    """A kill cut the snapshot's upload short: the bucket's .signatures.json is older
    than the mirror's, which signed the new state. Both lists are kept."""
    import json

    bucket_run = Path(store.root) / "study" / "r1"
    _write(bucket_run / ".signatures.json", json.dumps({"experiment_state-x.json": ["old"], "tuner.pkl": ["t"]}))
    _write(store.mirror / "study" / "r1" / ".signatures.json", json.dumps({"experiment_state-x.json": ["old", "new"]}))
    store.pull("study", "r1")
    merged = json.loads((store.mirror / "study" / "r1" / ".signatures.json").read_text())
    assert merged == {"experiment_state-x.json": ["new", "old"], "tuner.pkl": ["t"]}


class _Unreachable:
    """A bucket's file system with the network gone."""

    type_name = "s3"

    def __getattr__(self, name: str):  # noqa: ANN204
        def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise OSError("When listing objects under key 'p/study': AWS Error NETWORK_CONNECTION during "
                          "ListObjectsV2 operation: curlCode: 7, Couldn't connect to server")
        return fail


def test_a_bucket_that_goes_away_is_one_line_naming_what_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    store = RemoteStore(uri="s3://b/p", fs=_Unreachable(), root="b/p")
    with pytest.raises(UserError, match=r"^--storage s3://b/p: cannot list the runs in the bucket \(no network connection"):
        store.listdir("study")
    with pytest.raises(UserError, match=r"cannot read study/r1 from the bucket \(no network connection"):
        store.pull("study", "r1")
    run = _write(store.mirror / "study" / "r1" / "run.json", "{}").parent
    with pytest.raises(UserError, match=f"cannot put the run's files into the bucket; they are in the local mirror {run}"):
        store.push_own(run)


def test_two_drivers_starting_in_the_same_second_on_two_machines_claim_two_run_folders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each machine's mirror is its own disk, so a local atomic mkdir cannot keep two
    drivers (one per machine) out of one bucket folder: a default name in a bucket is random-suffixed."""
    from studies.runs import run_folder

    monkeypatch.setattr(run_folder, "new_run_name", lambda smoke: "20261207-120000")
    a = run_folder.claim_run_dir(tmp_path / "machine-a" / "study", None, smoke=False, shared=True)
    b = run_folder.claim_run_dir(tmp_path / "machine-b" / "study", None, smoke=False, shared=True)
    assert a.name != b.name and a.name.startswith("20261207-120000-") and b.name.startswith("20261207-120000-")
    local = run_folder.claim_run_dir(tmp_path / "disk" / "study", None, smoke=False)
    assert local.name == "20261207-120000"   # on one disk the atomic mkdir is enough: the name stays readable


def test_a_run_folder_is_claimed_in_the_bucket_once(store: RemoteStore, tmp_path: Path) -> None:
    store.claim("study", "r1")
    claims = list((Path(store.root) / "study" / "r1" / ".claims").iterdir())
    assert len(claims) == 1
    with pytest.raises(UserError, match="another driver claimed this run folder at the same moment"):
        store.claim("study", "r1", tries=2)   # a second driver, any machine: the first one's claim holds it
    assert list((Path(store.root) / "study" / "r1" / ".claims").iterdir()) == claims
    _write(Path(store.root) / "study" / "r2" / "run.json", "{}")
    with pytest.raises(UserError, match=r"r2: run folder already exists in the bucket; continue it with --resume --run r2"):
        store.claim("study", "r2")
    # A run's claims are never pulled into a mirror.
    _write(Path(store.root) / "study" / "r1" / "run.json", "{}")
    assert not (store.pull("study", "r1") / ".claims").exists()


def test_drivers_claiming_one_name_at_once_never_both_hold_it(store: RemoteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many drivers at the same instant (threads released together): never two holders,
    and the random pauses let one of them through."""
    import threading
    import time

    from studies.runs import remote_storage

    real_sleep = time.sleep
    monkeypatch.setattr(remote_storage.time, "sleep", lambda s: real_sleep(s / 20))   # the pauses, shorter

    holders_per_round = []
    for round_ in range(12):
        start, held = threading.Barrier(6), []

        def driver(start: threading.Barrier = start, held: list[int] = held, name: str = f"r{round_}") -> None:
            start.wait()
            try:
                store.claim("study", name, tries=6)
                held.append(1)
            except UserError:
                pass

        threads = [threading.Thread(target=driver) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        holders_per_round.append(len(held))
    assert max(holders_per_round) == 1, holders_per_round
    assert sum(holders_per_round) >= 9, holders_per_round   # livelock (everyone backs off) is rare
