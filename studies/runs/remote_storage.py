"""Run folders in an object store (``--storage s3://bucket/prefix``, ``gs://...``,
anything pyarrow's file systems resolve).

Tune writes its own part of a run (trial folders, checkpoints, experiment
snapshots) straight into the bucket. Everything else the driver writes and
reads (``run.json``, ``optuna.db``, the signatures, tables and plots) lives in
a *mirror* on this machine's local disk, ``~/.cache/raystudies/remote/<s3|gcs|...>/<bucket>/<prefix>``,
and is put into the bucket at every snapshot and at the end. The Optuna study
thus never sits as SQLite on a network file system (Optuna's known corruption
case), and a run can be read or resumed from the bucket alone: ``pull`` fills
an empty mirror on any machine. Checkpoints are never pulled: only the trials
read them, straight from the bucket.
"""

from __future__ import annotations

import errno
import os
import random
import secrets
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from studies.errors import UserError
from studies.runs.run_signing import SIGNATURES_FILE, merged_signatures

# What the driver writes into a run folder (relative paths, POSIX); Tune owns the rest.
# Never pushed: a pulled copy of one of Tune's files would overwrite its newer version.
OWN_TOP = ("run.json", "spec.yaml", "search_space.yaml", "optuna.db", ".signatures.json")
OWN_DIRS = ("tables", "plots", "hparams")
OWN_NESTED = ("stalled.txt", "candidates.json")
# A run folder's claims in the bucket: one object per driver that asked for the name (see RemoteStore.claim).
CLAIMS_DIR = ".claims"


def is_uri(text: str) -> bool:
    return "://" in text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


@dataclass(frozen=True)
class RemoteStore:
    """One ``--storage`` URI: its file system, the path on it, and the local mirror."""

    uri: str
    fs: Any          # pyarrow.fs.FileSystem
    root: str        # the URI's path on ``fs`` ("bucket/prefix")

    @classmethod
    def from_uri(cls, uri: str) -> RemoteStore:
        """pyarrow reads the endpoint (``AWS_ENDPOINT_URL``), region and credentials
        from the environment, as the AWS and Google tools do."""
        import pyarrow.fs

        try:
            fs, root = pyarrow.fs.FileSystem.from_uri(uri)
        except (pyarrow.lib.ArrowInvalid, pyarrow.lib.ArrowNotImplementedError, OSError, ValueError) as exc:
            raise UserError(f"--storage {uri}: not a storage URI pyarrow can open ({_first_line(exc)})") from None
        if not root.strip("/"):
            raise UserError(f"--storage {uri}: names no bucket; expected {uri.split('://', 1)[0]}://BUCKET/PREFIX")
        return cls(uri=uri.rstrip("/"), fs=fs, root=root.rstrip("/"))

    @property
    def mirror(self) -> Path:
        return mirror_of(self.fs.type_name, self.root)

    def uri_of(self, *parts: str) -> str:
        return "/".join([self.uri, *parts])

    def on_bucket(self, local: Path) -> str:
        """The bucket path of a folder of the mirror."""
        rel = local.relative_to(self.mirror).as_posix()
        return self.root if rel == "." else self.path_of(rel)

    def uri_for(self, local: Path) -> str:
        """The URI of a folder of the mirror, as the user names the bucket."""
        rel = local.relative_to(self.mirror).as_posix()
        return self.uri if rel == "." else self.uri_of(rel)

    def tune_storage(self, local: Path) -> dict[str, Any]:
        """Tune's ``storage_path``/``storage_filesystem`` for the mirror folder ``local``."""
        return {"storage_path": self.on_bucket(local), "storage_filesystem": self.fs}

    def path_of(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def check_reachable(self) -> None:
        """One line for a bucket that does not exist, refused credentials or no network."""
        import pyarrow.fs

        bucket = self.root.split("/", 1)[0]
        try:
            info = self.fs.get_file_info(bucket)
            if info.type == pyarrow.fs.FileType.NotFound:
                raise UserError(f"--storage {self.uri}: bucket {bucket!r} does not exist (create it first)")
            self.fs.get_file_info(pyarrow.fs.FileSelector(self.root, allow_not_found=True, recursive=False))
        except UserError:
            raise
        except OSError as exc:
            raise UserError(f"--storage {self.uri}: cannot use the bucket ({_why(exc)})") from None

    def unreachable(self) -> str | None:
        """Why the bucket does not answer now (its one line); None when it does."""
        try:
            self.check_reachable()
        except UserError as exc:
            return str(exc)
        return None

    @contextmanager
    def _bucket_errors(self, what: str) -> Iterator[None]:
        """An error of the bucket (network, credentials, permissions) as one line; a
        full local disk stays what it is (studies.runs.free_space words it)."""
        try:
            yield
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise UserError(f"--storage {self.uri}: {what} ({_why(exc)})") from None

    def listdir(self, *parts: str) -> list[str]:
        """Names of the folders directly under ``parts`` (none if it does not exist)."""
        import pyarrow.fs

        with self._bucket_errors("cannot list the runs in the bucket"):
            infos = self.fs.get_file_info(pyarrow.fs.FileSelector(self.path_of(*parts), allow_not_found=True))
        names = (PurePosixPath(i.path).name for i in infos if i.type == pyarrow.fs.FileType.Directory)
        return sorted(name for name in names if _stays_inside(PurePosixPath(name)))

    def claim(self, study: str, run: str, *, tries: int = 4) -> None:
        """Take the run folder ``study/run`` in the bucket for this driver, before anything
        is written there. A local ``mkdir`` cannot keep out a driver on another machine,
        and pyarrow's file systems have no conditional create, so: write a claim object
        of our own, then list the folder; we hold it only if nothing else is there. With
        the read-after-write consistency of S3 and GCS, of two drivers the one that lists
        second sees the other's claim, so two never both hold it. Both can see each
        other: then each takes its claim back and tries again after a random pause."""
        folder = self.path_of(study, run)
        mine = f"{folder}/{CLAIMS_DIR}/{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        with self._bucket_errors(f"cannot claim the run folder {study}/{run} in the bucket"):
            for attempt in range(tries):
                if attempt:
                    time.sleep(random.uniform(0.2, 1.0) * attempt)
                found = self._files_under(folder)
                if any(f"/{CLAIMS_DIR}/" not in path for path in found):
                    raise UserError(f"{self.uri_of(study, run)}: run folder already exists in the bucket; continue it "
                                    f"with --resume --run {run}, or pick another --run name")
                if found:   # only claims: another driver holds it, or is taking its claim back
                    continue
                self.fs.create_dir(f"{folder}/{CLAIMS_DIR}", recursive=True)
                with self.fs.open_output_stream(mine) as out:
                    out.write(f"{socket.gethostname()} pid {os.getpid()} at {time.time():.3f}\n".encode())
                if self._files_under(folder) == [mine]:
                    return
                self.fs.delete_file(mine)
        raise UserError(f"{self.uri_of(study, run)}: another driver claimed this run folder at the same moment; pick "
                        f"another --run name (a driver that stopped before writing anything leaves only "
                        f"{self.uri_of(study, run, CLAIMS_DIR)}/: delete it to reuse the name)")

    def check_keys_inside(self, *parts: str) -> None:
        """Refuse (one line) a folder in the bucket holding an object key that leaves it:
        Tune downloads a run's files on --resume as the keys read."""
        base = self.path_of(*parts)
        with self._bucket_errors(f"cannot list {'/'.join(parts)} in the bucket"):
            escaping = [path for path in self._files_under(base) if not _stays_inside(PurePosixPath(path).relative_to(base))]
        if escaping:
            raise UserError(f"{self.uri}/{PurePosixPath(escaping[0]).relative_to(self.root)}: an object key that leaves "
                            f"its run folder (put there by whoever can write to the bucket); --resume refuses the run "
                            f"until it is deleted")

    def _files_under(self, path: str) -> list[str]:
        import pyarrow.fs

        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True, recursive=True))
        return sorted(i.path for i in infos if i.type == pyarrow.fs.FileType.File)

    def pull(self, *parts: str, only: tuple[str, ...] | None = None) -> Path:
        """Copy the folder ``parts`` from the bucket into the mirror (no checkpoints;
        with ``only``, just the files of those names) and return its mirror path."""

        base = self.path_of(*parts)
        local = self.mirror.joinpath(*parts)
        with self._bucket_errors(f"cannot read {'/'.join(parts)} from the bucket"):
            self._pull_files(base, local, only)
        return local

    def _pull_files(self, base: str, local: Path, only: tuple[str, ...] | None) -> None:
        import pyarrow.fs

        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(base, allow_not_found=True, recursive=True))
        for info in infos:
            if info.type != pyarrow.fs.FileType.File:
                continue
            rel = PurePosixPath(info.path).relative_to(base)
            if not _stays_inside(rel):   # "a/../../x": written as it reads, it would land outside the mirror
                print(f"warning: {self.uri}/{PurePosixPath(info.path).relative_to(self.root)}: an object key that leaves "
                      "its folder; not copied (whoever can write to the bucket put it there)", file=sys.stderr)
                continue
            if (any(p.startswith("checkpoint_") or p == CLAIMS_DIR for p in rel.parts)
                    or (only is not None and rel.name not in only)):
                continue
            target = local.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".pulling")
            with self.fs.open_input_stream(info.path) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            # A SQLite journal beside the file being replaced is the old file's: rolled back into the
            # bucket's copy it would corrupt it.
            target.with_name(target.name + "-journal").unlink(missing_ok=True)
            if rel.name == SIGNATURES_FILE and target.is_file():
                # The mirror's can hold digests of a snapshot whose upload a kill cut short:
                # every digest is under this user's key, so both lists are kept.
                tmp.write_text(merged_signatures(target.read_text(), tmp.read_text()))
            os.replace(tmp, target)

    def push_own(self, run_dir: Path, *, report_only: bool = False) -> None:
        """``report_only``: the report's folders alone (``--report`` may run beside a
        driver elsewhere, whose newer run.json and optuna.db must not be overwritten)."""
        with self._bucket_errors(f"cannot put the run's files into the bucket; they are in the local mirror {run_dir}"):
            push_own_files(self.fs, run_dir, self.path_of(run_dir.relative_to(self.mirror).as_posix()),
                           report_only=report_only)


def push_own_files(fs: Any, run_dir: Path, dest_root: str, *, report_only: bool = False) -> None:
    """Put the driver's own files of a mirrored run folder into the bucket at ``dest_root``."""
    for path, rel in _own_copies(run_dir, report_only=report_only):
        _upload(fs, path, "/".join([dest_root, rel]))


def stage_own_files(run_dir: Path, staging: Path) -> None:
    """Copy the driver's own files into Tune's staging folder, which Tune uploads
    to the bucket with the experiment snapshot they belong to: a resumed run
    then finds ``optuna.db`` and Tune's trial states from the same moment (an
    Optuna study ahead of the snapshot would hold trials Tune never ran again)."""
    for path, rel in _own_copies(run_dir):
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".staging")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)


def _own_copies(run_dir: Path, *, report_only: bool = False) -> Iterator[tuple[Path, str]]:
    """(a consistent copy, its path in the run folder) of each of the driver's
    own files; ``optuna.db`` through SQLite's backup API, consistent even while
    the searcher writes to it."""
    with tempfile.TemporaryDirectory() as tmp:
        for path in own_files(run_dir, report_only=report_only):
            rel = path.relative_to(run_dir).as_posix()
            if path.name == "optuna.db":
                copy = Path(tmp) / "optuna.db"
                copy_sqlite(path, copy)
                yield copy, rel
            else:
                yield path, rel


def copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite file through SQLite's backup API, even while another process writes to it."""
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def _upload(fs: Any, path: Path, dest: str) -> None:
    fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
    with open(path, "rb") as src, fs.open_output_stream(dest) as out:
        shutil.copyfileobj(src, out)


def own_files(run_dir: Path, *, report_only: bool = False) -> list[Path]:
    """The files of ``run_dir`` the driver wrote (see OWN_*), for the bucket;
    ``report_only``: those of the report (tables, plots, hparams)."""
    found = [] if report_only else [run_dir / name for name in OWN_TOP if (run_dir / name).is_file()]
    for name in OWN_DIRS:
        found += sorted(p for p in (run_dir / name).rglob("*") if p.is_file())
    if report_only:
        return found
    for name in OWN_NESTED:
        found += sorted(p for p in run_dir.glob(f"*/{name}") if p.is_file())
    return found


def _stays_inside(rel: PurePosixPath) -> bool:
    """A relative object path that names a place inside its folder (no "..", no root)."""
    return not rel.is_absolute() and all(part not in ("", ".", "..") for part in rel.parts)


def mirror_of(fs_type: str, fs_path: str) -> Path:
    """The local mirror of a path in a bucket (``fs_type``: pyarrow's name of the
    file system, "s3", "gcs", ...); the same on every machine."""
    parts = [part for part in PurePosixPath(fs_path).parts if part != "/"]   # file:// roots are absolute
    return Path.home().joinpath(".cache", "raystudies", "remote", fs_type, *parts)


def _why(exc: OSError) -> str:
    text = _first_line(exc)
    low = text.lower()
    if "access denied" in low or "access_denied" in low or "invalidaccesskeyid" in low or "signature" in low or "forbidden" in low:
        return f"the credentials were refused: {text}"
    if "curl" in low or "connect" in low or "resolve" in low or "timed out" in low or "network" in low:
        return f"no network connection to it: {text}"
    return text
