"""Resume only run folders this user's drivers wrote (Ray-free).

``Tuner.restore`` unpickles ``tuner.pkl``, the searcher state and the pickles
Tune embeds in its experiment-state JSON: a run folder from elsewhere (a
download, a colleague's share, a tampered copy) can run any code on
``--resume``. Every driver therefore records an HMAC-SHA256 of each such file
in ``.signatures.json``, keyed by a secret in the user's cache dir (created
on first use, mode 0600), and ``--resume`` refuses a folder whose files do not
match unless told to trust it. Tune's callback-state pickle holds only plain
data (ASHA's rungs), so it is checked by unpickling with no classes allowed
instead of signed; ``--report`` reads none of these files.

Signatures are written straight into the run folder *before* Tune copies a new
snapshot there, and the last few digests per file are kept: at every moment,
a SIGKILL included, each file on disk matches one of its recorded digests.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import io
import json
import os
import pickle
import secrets
import tempfile
from pathlib import Path

from studies.errors import RefusedPickle, UserError

SIGNATURES_FILE = ".signatures.json"
KEY_FILE_NAME = "run-signing.key"
# Files Tune unpickles (or decodes with cloudpickle) when it restores an experiment.
TUNER_FILE = "tuner.pkl"
SIGNED = (TUNER_FILE, "searcher-state-*.pkl", "experiment_state-*.json", "search_gen_state-*.json")
PLAIN_DATA = ("callback-states-*.pkl",)
KEY_BYTES = 32
KEEP_DIGESTS = 3   # a file's current content and the versions a copy in flight may still leave
TRUST_FLAG = "--trust-run-folder"


def default_key_file() -> Path:
    return Path.home() / ".cache" / "raystudies" / KEY_FILE_NAME


def signing_key() -> bytes:
    """The user's key, created (32 random bytes, readable by the user alone) on first use.
    Written whole under a temporary name and linked into place, so a second driver
    starting at the same moment, or one killed while making it, never sees a partial key."""
    path = default_key_file()
    try:
        key = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        key = None
    except (ValueError, UnicodeDecodeError):
        key = b""
    if key is not None:
        if len(key) != KEY_BYTES:
            raise UserError(f"{path}: not a run-signing key ({2 * KEY_BYTES} hex digits); delete it to make a new one "
                            f"(runs signed with it will then need {TRUST_FLAG} once)")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.hex().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)   # fails if another driver linked its key first: then that one is the key
    except FileExistsError:
        return signing_key()
    finally:
        tmp.unlink(missing_ok=True)
    return key


def _digest(path: Path, key: bytes) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            mac.update(block)
    return mac.hexdigest()


def _files(run_dir: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted(p for pattern in patterns for p in run_dir.glob(pattern) if p.is_file())


def _recorded(run_dir: Path) -> dict[str, list[str]]:
    try:
        data = json.loads((run_dir / SIGNATURES_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return {k: [d for d in v if isinstance(d, str)] for k, v in data.items() if isinstance(v, list)} if isinstance(data, dict) else {}


def merged_signatures(*texts: str) -> str:
    """Several ``.signatures.json`` contents as one: each file's digests from all
    of them (all under this user's key; the newest last, a few kept)."""
    merged: dict[str, list[str]] = {}
    for text in texts:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        for name, digests in data.items():
            if not isinstance(digests, list):
                continue
            new = [d for d in digests if isinstance(d, str)]
            kept = [d for d in merged.get(name, []) if d not in new]
            merged[name] = [*kept, *new][-2 * KEEP_DIGESTS:]
    return json.dumps(merged, indent=1, sort_keys=True)


def sign_run_folder(run_dir: Path, key: bytes, *, sources: Path | None = None,
                    patterns: tuple[str, ...] = SIGNED) -> None:
    """Record the digest of every file Tune would unpickle from ``run_dir`` (or of
    those matching ``patterns``). With ``sources``, the files are read there (Tune's
    staging copy, about to be copied into ``run_dir``) and their digests added to
    those kept for ``run_dir``. Sign only bytes this driver or its Tune wrote: a file
    another user put into a shared run folder would be trusted from then on."""
    recorded = _recorded(run_dir)
    for path in _files(sources or run_dir, patterns):
        digest = _digest(path, key)
        kept = [d for d in recorded.get(path.name, []) if d != digest]
        recorded[path.name] = [*kept, digest][-KEEP_DIGESTS:]
    _write_signatures(run_dir, recorded)


def _write_signatures(run_dir: Path, recorded: dict[str, list[str]]) -> None:
    """Atomic, through a new temporary file (a name planted in a shared folder is never written through)."""
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f"{SIGNATURES_FILE}.", suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(recorded, indent=1, sort_keys=True))
    os.replace(tmp, run_dir / SIGNATURES_FILE)


class _NoClasses(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> None:
        raise pickle.UnpicklingError(f"refers to {module}.{name}")


def _plain_data_problem(path: Path) -> str | None:
    try:
        _NoClasses(io.BytesIO(path.read_bytes())).load()
    except Exception as exc:   # any reason it is not plain data
        return str(exc) or exc.__class__.__name__
    return None


def is_whole(run_dir: Path, path: Path, key: bytes) -> bool:
    """``path`` (a snapshot file of ``run_dir``, or a copy of one) is as this
    user's driver wrote it: its digest is among those recorded for its name in
    ``run_dir``, or, for the callback-state pickle, it is plain data."""
    if any(path.match(p) for p in PLAIN_DATA):
        return _plain_data_problem(path) is None
    return _digest(path, key) in _recorded(run_dir).get(path.name, [])


def check_run_folder(run_dir: Path, key: bytes) -> None:
    """Refuse (one line) a run folder with a file Tune would unpickle that this
    user's key did not sign, or a callback-state pickle that is more than data."""
    recorded = _recorded(run_dir)
    for path in _files(run_dir, SIGNED):
        if _digest(path, key) not in recorded.get(path.name, []):
            why = "no signatures (a run folder from elsewhere, or from before signing)" if not recorded else \
                "not signed by this user's key (written elsewhere, or changed since)"
            raise UserError(f"{path}: {why}; Tune would unpickle it, which can run any code. Resume only a run "
                            f"folder you trust, with {TRUST_FLAG}")
    for path in _files(run_dir, PLAIN_DATA):
        problem = _plain_data_problem(path)
        if problem is not None:
            raise UserError(f"{path}: holds more than plain data ({problem}); Tune would unpickle it, which can run "
                            f"any code. Resume only a run folder you trust, with {TRUST_FLAG}")


def _signed_as(run_dir: Path, pattern: str, data: bytes, key: bytes) -> bool:
    digest = hmac.new(key, data, hashlib.sha256).hexdigest()
    return any(digest in digests for name, digests in _recorded(run_dir).items() if fnmatch.fnmatch(name, pattern))


def check_bytes(run_dir: Path, what: str, pattern: str, data: bytes, key: bytes) -> None:
    """Refuse (RefusedPickle, one line) ``data``, the very bytes Tune is about to unpickle as ``what``
    (a file matching ``pattern``), unless this user's key signed them in ``run_dir``
    (or, for the callback-state pickle, they are plain data). Checking the file and
    then letting Tune read it again would leave a window in which it can be swapped."""
    if pattern in PLAIN_DATA:
        try:
            _NoClasses(io.BytesIO(data)).load()
        except Exception as exc:   # any reason it is not plain data
            raise RefusedPickle(f"{what}: holds more than plain data ({exc or exc.__class__.__name__}), as Tune was about "
                            f"to read it; resume only a run folder you trust, with {TRUST_FLAG}") from None
        return
    if not _signed_as(run_dir, pattern, data, key):
        raise RefusedPickle(f"{what}: not signed by this user's key as Tune was about to unpickle it (changed after the "
                        f"run folder was checked, or written elsewhere); resume only a run folder you trust, with "
                        f"{TRUST_FLAG}")


def check_copy(copy_dir: Path, run_dir: Path, key: bytes) -> None:
    """Every file Tune will unpickle from ``copy_dir`` (its private staging copy of the
    run folder's snapshot, downloaded at restore) checked as it now is there: nothing
    else writes into that copy, so what is checked is what Tune reads."""
    for path in _files(copy_dir, SIGNED + PLAIN_DATA):
        pattern = next(p for p in SIGNED + PLAIN_DATA if path.match(p))
        check_bytes(run_dir, str(run_dir / path.name), pattern, path.read_bytes(), key)


def sign_bytes(run_dir: Path, name: str, data: bytes, key: bytes) -> None:
    """Record the digest of ``data``, which this driver itself wrote as ``name``
    (never read back from the folder, where someone else may have changed it)."""
    recorded = _recorded(run_dir)
    digest = hmac.new(key, data, hashlib.sha256).hexdigest()
    recorded[name] = [*[d for d in recorded.get(name, []) if d != digest], digest][-KEEP_DIGESTS:]
    _write_signatures(run_dir, recorded)
