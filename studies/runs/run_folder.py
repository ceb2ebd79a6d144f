"""Where a run lives and what it says about itself (Ray-free).

``<storage>/<study>/<run>/`` holds Ray Tune's experiment state (so
``Tuner.restore`` and ``ExperimentAnalysis`` work on it), ``optuna.db``,
``run.json`` (what was run, by whom, when, how it ended), one ``trial_*``
folder per trial, and ``tables/`` and ``plots/``.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from studies.errors import UserError

RUN_FILE = "run.json"
SPEC_FILE, SEARCH_SPACE_FILE, OPTUNA_FILE = "spec.yaml", "search_space.yaml", "optuna.db"
# The Optuna user attribute that holds a trial's Tune trial id (written by
# studies.tune.optuna_bridge, read by the Ray-free report code).
TUNE_TRIAL_ID_ATTR = "tune_trial_id"
# Set (True) on an Optuna trial that a killed driver asked for but Tune never recorded.
ORPHANED_ATTR = "orphaned_by_driver_kill"
# Optuna *study* attribute: Tune trial ids of trials that finished in Optuna but are not in the
# Tune experiment a resume went on from (a finished trial's own attributes can no longer be
# written). Read as orphaned, like ORPHANED_ATTR.
SET_ASIDE_ATTR = "finished_outside_the_tune_experiment"
# The folders the report writes (tables, plots, TensorBoard's hparams view).
REPORT_DIRS = ("tables", "plots", "hparams")


@dataclass
class Invocation:
    """The command line a run was started with (what --resume repeats)."""

    study_file: str = ""
    smoke: bool = False
    overrides: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)   # --fix NAME=VALUE texts (absent in a run from before --fix)
    data: str | None = None
    address: str | None = None


@dataclass
class RunInfo:
    """run.json: what was run, by whom, where, and how it ended. Keys a newer
    version adds are optional, so an older run folder still reads."""

    study: str
    run: str
    status: str = "?"                 # running | finished | interrupted | failed
    started: float = 0.0
    invocation: Invocation = field(default_factory=Invocation)
    metric: str = ""
    mode: str = "min"
    max_epochs: int = 0
    num_samples: int = 0
    params: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)
    max_concurrent: int | None = None
    cluster: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    platform: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    wall_s: float = 0.0               # the search stage, summed over resumes
    tune_s: float = 0.0               # of which inside Tuner.fit
    finished: float | None = None
    resumed: float | None = None
    trial_counts: dict[str, int] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=dict)
    confirm_wall_s: float | None = None   # a run from before stage_s: the designed stage's seconds
    designed_overrides: list[str] = field(default_factory=list)
    data_sha256: str | None = None   # of the --data file when the run started; --resume checks it

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: Path) -> RunInfo:
        known = {f.name for f in fields(cls)} | {"confirm_overrides"}
        unknown = sorted(set(raw) - known)
        if unknown or not isinstance(raw.get("study"), str) or not isinstance(raw.get("run"), str):
            what = f"unknown key {unknown[0]!r}" if unknown else "no study or run name"
            raise UserError(f"{source}: corrupt run file ({what})")
        values = dict(raw)
        if "confirm_overrides" in values:   # a run from before the designed stage had one name
            values["designed_overrides"] = values.pop("confirm_overrides")
        values["invocation"] = Invocation(**{k: v for k, v in (raw.get("invocation") or {}).items()
                                             if k in {f.name for f in fields(Invocation)}})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def stages(self) -> dict[str, float]:
        """Seconds per stage; for a run from before ``stage_s``, from wall_s and confirm_wall_s."""
        if self.stage_s:
            return dict(self.stage_s)
        return {"search": self.wall_s, **({"designed": self.confirm_wall_s} if self.confirm_wall_s is not None else {})}


@dataclass(frozen=True)
class RunFolder:
    """Every path of one run, named once: the writers (driver, tuner, designed
    stage) and the readers (report) both ask this."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def run_json(self) -> Path:
        return self.path / RUN_FILE

    @property
    def spec_copy(self) -> Path:
        return self.path / SPEC_FILE

    @property
    def search_space_copy(self) -> Path:
        return self.path / SEARCH_SPACE_FILE

    @property
    def optuna_db(self) -> Path:
        return self.path / OPTUNA_FILE

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.optuna_db}"

    @property
    def designed(self) -> Path:
        """The designed stage's own Tune experiment (confirmation, leave-one-out);
        ``confirm/`` in a run from before the stage had one name."""
        old = self.path / "confirm"
        return old if old.is_dir() and not (self.path / "designed").exists() else self.path / "designed"

    @property
    def candidates(self) -> Path:
        """The designed stage's plan: its configs and seeds (studies.runs.designed)."""
        return self.designed / "candidates.json"

    @property
    def designed_interrupted(self) -> Path:
        """Runs a stopped designed stage left unfinished, kept out of its tables
        (the stage re-runs them when it continues)."""
        return self.designed / "interrupted"

    @property
    def tables(self) -> Path:
        return self.path / "tables"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def report(self) -> Path:
        return self.tables / "ablation.md"

    def outputs_without_links(self) -> list[tuple[Path, str]]:
        """Make the report's folders safe to write into: a run folder received from
        someone else can hold ``tables/ablation.md`` as a link to ``~/.ssh/authorized_keys``,
        and every writer of the report follows links. A symbolic link in them is removed
        (the link, never what it points to) and returned with its target; a report folder that is itself
        a link is refused (one line): its files would land wherever it points."""
        removed = []
        for name in REPORT_DIRS:
            folder = self.path / name
            if folder.is_symlink():
                raise UserError(f"{folder}: a symbolic link (to {os.readlink(folder)}); the report writes only into the "
                                "run's own folders: remove the link, then run the command again")
            for root, dirs, files in os.walk(folder):   # os.walk does not follow links
                for entry in [*dirs, *files]:
                    path = Path(root, entry)
                    if path.is_symlink():
                        target = os.readlink(path)
                        path.unlink()
                        removed.append((path, target))
        return removed

    def exists(self) -> bool:
        return self.run_json.is_file()

    def info(self) -> RunInfo:
        return read_run_info(self.path)

    def update(self, **changes: Any) -> RunInfo:
        return update_run_info(self.path, **changes)


LOCK_FILE = ".driver.lock"


def check_not_in_use(run_dir: Path) -> None:
    """Refuse (the holder named) a run folder another driver holds: checked first,
    so that a second driver hears that, not what it reads of a folder in flux."""
    with driver_lock(run_dir, record=False):
        pass


def in_use(run_dir: Path) -> bool:
    """Whether a driver holds the run folder now (see driver_lock)."""
    if not (run_dir / LOCK_FILE).exists():
        return False
    try:
        check_not_in_use(run_dir)
    except UserError:
        return True
    return False


@contextmanager
def driver_lock(run_dir: Path, *, record: bool = True) -> Iterator[None]:
    """Hold an OS lock on the run folder for a driver's lifetime: a second driver
    on the same folder (a second --resume, --designed while it runs) would re-run
    finished trials and add trials beyond num_samples. The kernel drops the
    lock when the process dies, however it dies, so a killed driver never
    leaves a stale one."""
    path = run_dir / LOCK_FILE
    handle = open(path, "a+")   # noqa: SIM115 (held open for the whole block)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(f"{run_dir}: in use by another driver ({holder}); wait for it to end, "
                            "or stop it (Ctrl+C) and --resume") from None
        if record:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
        yield
    finally:
        handle.close()


def study_root(storage: Path, study: str) -> Path:
    return storage / study


def new_run_name(smoke: bool) -> str:
    return ("smoke-" if smoke else "") + time.strftime("%Y%m%d-%H%M%S")


def list_runs(storage: Path, study: str) -> list[Path]:
    """Runs of a study, oldest first (by their start time in run.json)."""
    root = study_root(storage, study)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / RUN_FILE).is_file()]
    return sorted(runs, key=lambda p: (read_run_info(p).started, p.name))


def latest_run(storage: Path, study: str) -> Path:
    runs = list_runs(storage, study)
    if not runs:
        raise UserError(f"{study_root(storage, study)}: no runs of study {study!r} yet (run `python studies/run.py {study}` first)")
    return runs[-1]


def read_run_info(run_dir: Path) -> RunInfo:
    path = run_dir / RUN_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{run_dir}: not a run folder (no {RUN_FILE})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: corrupt run file ({exc})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: corrupt run file (expected a JSON object)")
    return RunInfo.from_dict(raw, path)


def write_run_info(run_dir: Path, info: RunInfo) -> None:
    """Atomic replace, so a killed driver never leaves half a run.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{RUN_FILE}.", suffix=".tmp")   # a new file: no link followed
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(info.to_dict(), indent=2, sort_keys=True, default=str))
    os.replace(tmp, run_dir / RUN_FILE)


def update_run_info(run_dir: Path, **changes: Any) -> RunInfo:
    """Read, change the named fields (an unknown name is a bug: TypeError), write."""
    info = read_run_info(run_dir)
    unknown = set(changes) - {f.name for f in fields(RunInfo)}
    if unknown:
        raise TypeError(f"RunInfo has no field(s) {sorted(unknown)}")
    for key, value in changes.items():
        setattr(info, key, value)
    write_run_info(run_dir, info)
    return info


def check_optuna_study(db: Path, study: str) -> None:
    """Before a resume does any work: the Optuna study file is SQLite, passes
    SQLite's quick check and holds the study. (Otherwise the sampler has no
    history, and the run would train every remaining trial and then fail.)
    Opened for writing: a driver killed inside a write leaves ``optuna.db-journal``,
    which SQLite rolls back on that open (a read-only open refuses the file)."""
    import sqlite3
    from contextlib import closing

    keep = "the trials on disk are intact (--report still reads them)"
    aside = f"move it aside (mv {db} {db}.damaged) and --resume rebuilds it from them"
    try:
        with closing(sqlite3.connect(db)) as con:
            ok = con.execute("PRAGMA quick_check").fetchone()[0]
            names = {row[0] for row in con.execute("SELECT study_name FROM studies")}
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{db}: not a readable Optuna study ({exc}); {keep}: {aside}") from None
    if ok != "ok":
        raise UserError(f"{db}: damaged (SQLite quick_check: {ok}); {keep}: {aside}")
    if study not in names:
        raise UserError(f"{db}: holds no study {study!r} (found: {sorted(names)}); {keep}: {aside}")


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


PLATFORM_ROOT = Path(__file__).resolve().parents[2]
COMMIT_ENV = "RAYSTUDIES_GIT_COMMIT"  # for a copy without .git (a Ray job's working_dir): set by whoever shipped it
DIRTY_ENV = "RAYSTUDIES_GIT_DIRTY"    # with it: 1 if that checkout had uncommitted changes, 0 if not


def platform_version(root: Path = PLATFORM_ROOT) -> dict[str, Any]:
    """The platform's own version, commit and whether its checkout had
    uncommitted changes, from where this code lives (not from the spec's
    folder, which may be outside any checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver: str | None = version("raystudies")
    except PackageNotFoundError:
        ver = None
    commit = git_commit(root)
    dirty: bool | None = None
    if commit is not None:
        try:
            out = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=5)
            dirty = bool(out.stdout.strip()) if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            dirty = None
    else:
        commit = os.environ.get(COMMIT_ENV) or None
        flag = os.environ.get(DIRTY_ENV, "").strip().lower()
        dirty = {"1": True, "true": True, "0": False, "false": False}.get(flag) if commit else None
    return {"version": ver, "commit": commit, "dirty": dirty}


def host() -> str:
    return socket.gethostname()


def claim_run_dir(study_dir: Path, name: str | None, *, smoke: bool, shared: bool = False) -> Path:
    """Create the run folder atomically, so two runs started at the same moment
    never share one. A name the user gave must be new; a default (timestamp)
    name gets a ``-2``, ``-3``... suffix when taken. ``shared``: ``study_dir``
    is a bucket's local mirror, which another machine's driver does not see,
    so a default name also gets a random suffix (two drivers starting in the
    same second on two machines would otherwise claim one folder in the bucket)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    if name is not None:
        path = study_dir / name
        try:
            path.mkdir()
        except FileExistsError:
            raise UserError(f"{path}: run folder already exists; continue it with --resume --run {name}, "
                            "or pick another --run name") from None
        return path
    base = new_run_name(smoke) + (f"-{secrets.token_hex(3)}" if shared else "")
    for n in range(1, 1000):
        path = study_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError(f"{study_dir}: could not find a free run name")
