"""A whole copy of Tune's last experiment snapshot inside the run folder.

Tune writes each snapshot in its staging folder (its state files, and each
trial's driver-side files: ``result.json``, ``progress.csv``, ``params.json``,
``params.pkl``, TensorBoard's events), then copies the staging folder into the
run folder in place, file by file: a kill during that copy leaves a file empty
or cut short, and the others a mix of that snapshot and the one before (a
trial's state of snapshot N beside its result files of N-1, or none), which
Tune cannot continue (trials restored that report nothing, Optuna trials left
orphaned). At every snapshot, before Tune copies it, the driver copies the same
files from the staging folder into ``.last-snapshot/`` (a new folder renamed
into place, marked whole last). A trial file unchanged since the previous copy
is hard-linked from it, so a snapshot costs a copy of the state files and of
the trial files that grew since the last one (the running trials' results).

On ``--resume``, when the run folder's snapshot is not the copy's (a state file
cut short, missing or other than the copy's, or a trial file missing or behind
the copy's), the copy's whole snapshot is put back: every state file, and each
trial file the run folder lacks or holds only a beginning of (a trial's files
only grow: one longer than the copy's was copied after it, and is kept). Only
bytes this user signed are put back: the state files' digests are in the run
folder's signatures (studies.runs.run_signing), each trial file's HMAC under
the same key is in the copy's manifest; and nothing is put back while a whole
state file of the run folder is unsigned (changed, or planted), which the
signature check then refuses. The callback-state file (ASHA's rungs) is written
after the copy is made, so the copy's is the previous snapshot's: it is put back
only where the run folder's is missing or cut short.

A copy that cannot be made (no space) removes the previous one: an older
snapshot put back would take the run back past what the run folder holds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from studies.errors import UserError
from studies.runs.run_signing import PLAIN_DATA, SIGNED, TUNER_FILE, is_whole

COPY_DIR = ".last-snapshot"
WHOLE_MARK = ".whole"   # written last: a copy without it was cut short
MANIFEST = ".trial-files.json"   # each trial file of the copy: its source's size and mtime, its HMAC
FILES = (*SIGNED, *PLAIN_DATA)
_TRIAL_FILE = re.compile(r"trial_[^/\\]+/[^/\\]+")


def _files(folder: Path, patterns: tuple[str, ...] = FILES) -> list[Path]:
    return sorted(p for pattern in patterns for p in folder.glob(pattern) if p.is_file() and not p.is_symlink())


def _trial_files(folder: Path) -> dict[str, Path]:
    """``trial_*/<file>``: the driver's files of each trial (the checkpoints, in folders, are not)."""
    return {f"{d.name}/{p.name}": p for d in sorted(folder.glob("trial_*")) if d.is_dir() and not d.is_symlink()
            for p in sorted(d.iterdir()) if p.is_file() and not p.is_symlink()}


def _mac(key: bytes, rel: str, path: Path) -> str:
    mac = hmac.new(key, rel.encode() + b"\0", hashlib.sha256)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            mac.update(block)
    return mac.hexdigest()


def _manifest(copy: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads((copy / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and _TRIAL_FILE.fullmatch(k)} \
        if isinstance(data, dict) else {}


def keep_copy(run_dir: Path, staging: Path, key: bytes) -> None:
    """Copy the snapshot of ``staging`` (its state files and each trial's files,
    and the run's tuner.pkl, which Tune writes into the run folder itself, whole,
    before the fit) into ``run_dir/.last-snapshot``. Never fails the snapshot: a
    copy that cannot be made leaves none."""
    new, old, live = run_dir / f"{COPY_DIR}.new", run_dir / f"{COPY_DIR}.old", run_dir / COPY_DIR
    try:
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        for path in [*_files(staging), *_files(run_dir, (TUNER_FILE,))]:
            shutil.copyfile(path, new / path.name)
        before = _manifest(live) if (live / WHOLE_MARK).is_file() else {}
        manifest: dict[str, dict[str, object]] = {}
        for rel, path in _trial_files(staging).items():
            st = path.stat()
            stamp = [st.st_size, st.st_mtime_ns]
            if not (new / rel).parent.is_dir():
                (new / rel).parent.mkdir()
            kept = before.get(rel)
            if kept is not None and kept.get("stamp") == stamp:
                try:
                    os.link(live / rel, new / rel)   # unchanged since the last copy: no bytes copied
                    manifest[rel] = kept
                    continue
                except OSError:
                    pass
            shutil.copyfile(path, new / rel)
            manifest[rel] = {"stamp": stamp, "mac": _mac(key, rel, new / rel)}
        (new / MANIFEST).write_text(json.dumps(manifest))
        (new / WHOLE_MARK).touch()
        shutil.rmtree(old, ignore_errors=True)
        if live.exists():
            os.rename(live, old)
        os.rename(new, live)
        shutil.rmtree(old, ignore_errors=True)
    except OSError:
        for folder in (new, live, old):   # an older copy put back would take the run back
            shutil.rmtree(folder, ignore_errors=True)


def _whole_copy(run_dir: Path) -> Path | None:
    """The newest whole copy (a kill between the two renames leaves it as ``.new``)."""
    for name in (COPY_DIR, f"{COPY_DIR}.new", f"{COPY_DIR}.old"):
        folder = run_dir / name
        if (folder / WHOLE_MARK).is_file() and not folder.is_symlink():
            return folder
    return None


def _behind(target: Path, source: bytes) -> bool:
    """The run folder's trial file is missing, or not the copy's bytes nor more of them (a trial's files grow)."""
    if not target.is_file():
        return True
    return not target.read_bytes().startswith(source)


def put_back_damaged(run_dir: Path, key: bytes) -> list[str]:
    """Before a resume: when the run folder's snapshot is not the copy's whole one
    (see the module), the copy's snapshot put back, so the files are of one moment;
    returns the names put back (state files, then ``trial_*/<file>``). Nothing is
    put back while a whole state file of the run folder is unsigned: it says
    someone else wrote into the folder, for the signature check to refuse."""
    copy = _whole_copy(run_dir)
    if copy is None:
        return []
    present = _files(run_dir)
    cut = [p for p in present if _cut_short(p)]
    if any(not ((copy / p.name).is_file() and is_whole(run_dir, copy / p.name, key)) for p in cut):
        return []
    if any(p not in cut and not is_whole(run_dir, p, key) for p in present):
        return []
    states = [s for s in _files(copy) if is_whole(run_dir, s, key)]
    trials = {rel: copy / rel for rel, entry in _manifest(copy).items()
              if (copy / rel).is_file() and not (copy / rel).is_symlink()
              and hmac.compare_digest(str(entry.get("mac", "")), _mac(key, rel, copy / rel))}
    plain = tuple(PLAIN_DATA)

    def state_behind(source: Path) -> bool:
        target = run_dir / source.name
        if any(source.match(p) for p in plain):
            return not target.is_file() or _cut_short(target)
        return not target.is_file() or target.read_bytes() != source.read_bytes()

    behind_states = [s for s in states if state_behind(s)]
    behind_trials = {rel: s for rel, s in trials.items() if _behind(run_dir / rel, s.read_bytes())}
    if not cut and not behind_states and not behind_trials:
        return []
    restored = []
    for source in behind_states:
        _put(source, run_dir / source.name)
        restored.append(source.name)
    for rel, source in sorted(behind_trials.items()):
        folder = (run_dir / rel).parent
        if folder.is_symlink():
            continue   # never written through a link
        folder.mkdir(exist_ok=True)
        _put(source, run_dir / rel)
        restored.append(rel)
    return restored


def _put(source: Path, target: Path) -> None:
    """``target`` replaced by ``source``'s bytes, through a new temporary file (never a planted name)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".restoring")
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as f:
            shutil.copyfileobj(f, out)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cut_short(path: Path) -> bool:
    """Empty, or ending before its format does (a kill during Tune's in-place copy)."""
    data = path.read_bytes()
    if not data:
        return True
    if path.suffix == ".json" and not data.startswith(b"\x80"):   # search_gen_state-*.json is a pickle
        try:
            json.loads(data)
        except ValueError:
            return True
        return False
    return not data.rstrip(b"\n").endswith(b".")   # every pickle ends with STOP ('.')


def killed_before_first_snapshot(run_dir: Path) -> bool:
    """The driver was killed while Tune wrote ``tuner.pkl`` (into the run folder
    itself, when the Tuner is made, before its first snapshot): the file is there but
    cut short (Tune opens it, then pickles), and Tune left no snapshot and no trial.
    Nothing of the study ran, and nothing in the folder can be resumed; the study can
    only start again. A folder with no tuner.pkl at all is not this (never a Tune run)."""
    tuner = run_dir / "tuner.pkl"
    if not tuner.is_file() or not _cut_short(tuner):
        return False
    return not any(run_dir.glob("experiment_state-*.json")) and not any(p.is_dir() for p in run_dir.glob("trial_*"))


def check_snapshot_whole(run_dir: Path) -> None:
    """Refuse (one line) a run whose snapshot file was cut short and could not be
    put back: Tune would hang or loop on it, trusted or not."""
    if killed_before_first_snapshot(run_dir):
        raise UserError(f"{run_dir / 'tuner.pkl'}: cut short, and no snapshot of Tune's beside it (the "
                        "driver was killed while Tune wrote it, when the run started): no trial ran and there is "
                        "nothing to continue; start the study again")
    for path in _files(run_dir):
        if _cut_short(path):
            raise UserError(f"{path}: empty or cut short (the driver was killed while Tune copied this snapshot file "
                            f"into the run folder) and {run_dir / COPY_DIR} holds no whole copy of it; the run cannot "
                            "be continued: start it again (--report still reads its trials)")
