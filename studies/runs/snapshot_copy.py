"""A whole copy of Tune's last experiment snapshot inside the run folder.

Tune writes each snapshot file in its staging folder, then copies it into the
run folder in place: a kill during one of those copies leaves that file empty
or cut short, and the run could not be continued. At every snapshot, before
Tune copies it, the driver copies the same files from the staging folder into
``.last-snapshot/`` (a new folder renamed into place, marked whole last).
When a snapshot file is cut short (empty, or ending before its format does),
a resume puts the copy's whole snapshot back, every file of it, so the files
are of one moment; only files signed by this user's key
(studies.runs.run_signing) are put back, and a whole file that is unsigned
(changed or planted) is left for the signature check to refuse. The callback-state file
(ASHA's rungs) is written after the copy is made, so its copy is the previous
snapshot's: a resume from it knows the rungs of a few seconds earlier.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from studies.errors import UserError
from studies.runs.run_signing import PLAIN_DATA, SIGNED, is_whole

COPY_DIR = ".last-snapshot"
WHOLE_MARK = ".whole"   # written last: a copy without it was cut short
FILES = (*SIGNED, *PLAIN_DATA)


def _files(folder: Path, patterns: tuple[str, ...] = FILES) -> list[Path]:
    return sorted(p for pattern in patterns for p in folder.glob(pattern) if p.is_file())


def keep_copy(run_dir: Path, staging: Path) -> None:
    """Copy the snapshot files of ``staging`` (and the run's tuner.pkl, which Tune
    writes into the run folder itself, whole, before the fit) into
    ``run_dir/.last-snapshot``. Never fails the snapshot: a copy that cannot be
    made leaves the previous one."""
    new, old, live = run_dir / f"{COPY_DIR}.new", run_dir / f"{COPY_DIR}.old", run_dir / COPY_DIR
    try:
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        for path in [*_files(staging), *_files(run_dir, ("tuner.pkl",))]:
            shutil.copyfile(path, new / path.name)
        (new / WHOLE_MARK).touch()
        shutil.rmtree(old, ignore_errors=True)
        if live.exists():
            os.rename(live, old)
        os.rename(new, live)
        shutil.rmtree(old, ignore_errors=True)
    except OSError:
        shutil.rmtree(new, ignore_errors=True)


def _whole_copy(run_dir: Path) -> Path | None:
    """The newest whole copy (a kill between the two renames leaves it as ``.new``)."""
    for name in (COPY_DIR, f"{COPY_DIR}.new", f"{COPY_DIR}.old"):
        folder = run_dir / name
        if (folder / WHOLE_MARK).is_file():
            return folder
    return None


def put_back_damaged(run_dir: Path, key: bytes) -> list[str]:
    """Before a resume: when a snapshot file of ``run_dir`` is cut short and the
    copy holds it whole, the copy's whole snapshot put back (every file of it that
    differs, so the files are of one moment); returns the names put back. A file
    that is whole but unsigned (changed, or planted) is left for the signature
    check to refuse: it says someone else wrote into the folder."""
    copy = _whole_copy(run_dir)
    if copy is None:
        return []
    cut = [p for p in _files(run_dir) if _cut_short(p)]
    if not cut or not all((copy / p.name).is_file() and is_whole(run_dir, copy / p.name, key) for p in cut):
        return []
    unsigned = [p for p in _files(run_dir) if p not in cut and not is_whole(run_dir, p, key)]
    if unsigned:
        return []
    restored = []
    for source in _files(copy):
        target = run_dir / source.name
        if not is_whole(run_dir, source, key) or target.is_file() and target.read_bytes() == source.read_bytes():
            continue
        tmp = target.with_name(f"{target.name}.restoring")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        restored.append(target.name)
    return restored


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
    itself, when the Tuner is made, before its first snapshot): the file is missing
    or cut short, and Tune left no snapshot and no trial. Nothing of the study ran,
    and nothing in the folder can be resumed; the study can only start again."""
    tuner = run_dir / "tuner.pkl"
    if tuner.is_file() and not _cut_short(tuner):
        return False
    return not any(run_dir.glob("experiment_state-*.json")) and not any(p.is_dir() for p in run_dir.glob("trial_*"))


def check_snapshot_whole(run_dir: Path) -> None:
    """Refuse (one line) a run whose snapshot file was cut short and could not be
    put back: Tune would hang or loop on it, trusted or not."""
    if killed_before_first_snapshot(run_dir):
        raise UserError(f"{run_dir / 'tuner.pkl'}: missing or cut short, and no snapshot of Tune's beside it (the "
                        "driver was killed while Tune wrote it, when the run started): no trial ran and there is "
                        "nothing to continue; start the study again")
    for path in _files(run_dir):
        if _cut_short(path):
            raise UserError(f"{path}: empty or cut short (the driver was killed while Tune copied this snapshot file "
                            f"into the run folder) and {run_dir / COPY_DIR} holds no whole copy of it; the run cannot "
                            "be continued: start it again (--report still reads its trials)")
