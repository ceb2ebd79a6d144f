"""Where results go, and whether every node of the cluster can see it."""

from __future__ import annotations

import os
from pathlib import Path

from studies.errors import UserError

# Where synthetic data sets are cached unless --cache-dir says otherwise.
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "raystudies"

# File systems that live on one machine: a run folder there is invisible to
# trials on other nodes (Ray Tune >= 2.7 no longer syncs trial folders to the head).
LOCAL_FILESYSTEMS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "vfat", "exfat", "ramfs", "devtmpfs"}


def resolve_storage(text: str | None, default: Path) -> Path:
    if text is None:
        return default
    return writable_folder("--storage", text)


def writable_folder(option: str, text: str) -> Path:
    """``text`` as a folder this process can write in (it may not exist yet: its
    nearest existing parent must then be a writable folder)."""
    if not text.strip():
        raise UserError(f"{option}: is empty, expected a folder path")
    path = Path(text).expanduser().resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{option} {text}: {existing} is a file, expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {text}: {existing} is not writable")
    return path


def check_run_name(name: str) -> str:
    """A --run name is one folder name inside the study's folder: no path."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or name.startswith("."):
        raise UserError(f"--run {name}: expected a plain folder name (letters, digits, -, _), not a path")
    return name


def filesystem_type(path: Path, mounts_file: Path = Path("/proc/mounts")) -> str | None:
    """Type of the file system holding ``path`` (its nearest existing ancestor), from /proc/mounts."""
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return None
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    target = os.path.realpath(probe)
    best, best_type = "", None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, best_type = mount, parts[2]
    return best_type


def check_shared_storage(storage: Path, machines: int, *, mounts_file: Path = Path("/proc/mounts")) -> None:
    """Fail early when a cluster of several machines would write into one machine's local disk."""
    if machines <= 1:
        return
    fs = filesystem_type(storage, mounts_file)
    if fs in LOCAL_FILESYSTEMS:
        raise UserError(f"--storage {storage}: is on this machine's local disk ({fs}), but the Ray cluster spans {machines} machines; "
                        "trials on the other nodes could not write there. Use a shared filesystem (NFS, Lustre, ...) "
                        "mounted at the same path on every node")
