"""The errors a run ends with, and their exit codes (README: "Exit codes")."""

from __future__ import annotations

EXIT_USER_ERROR = 2        # bad input: one line, nothing on disk lost
EXIT_ALL_TRIALS_FAILED = 3  # the study ran, and not one trial got through
EXIT_STORAGE_LOST = 69     # the bucket of --storage stopped answering mid-run: --resume once it answers
EXIT_DISK_FULL = 74        # the run folder's disk (nearly) full: stopped cleanly, --resume once there is room
EXIT_RAY_LOST = 75         # the Ray cluster lost every node (a killed raylet): stopped cleanly, --resume
EXIT_INTERRUPTED = 130     # Ctrl+C / SIGINT: --resume continues it
EXIT_TERMINATED = 143      # SIGTERM (timeout, docker stop, Slurm, Kubernetes): --resume continues it


class UserError(Exception):
    """Bad input from the user: the message is the whole story (file, key, expected)."""


class DiskFull(Exception):
    """No room left (or nearly none) where the run writes: the message is the whole story."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived where no Tune experiment could stop cleanly for it."""


class RefusedPickle(BaseException):
    """A file Tune was about to unpickle is not as this user's driver wrote it (checked as
    Tune read it). A BaseException, as KeyboardInterrupt is: Tune answers any Exception
    from its restore by starting the experiment afresh in the same folder."""
