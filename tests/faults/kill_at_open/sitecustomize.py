"""Test-only fault injector: the study driver SIGKILLed (with its whole process
group, as a crash or the OOM killer of a job takes it) right after it opened a
snapshot file in the run folder, before writing a byte of it.

Active only in the driver (``studies/run.py``) of a command started with this
folder on PYTHONPATH and ``RAYSTUDIES_KILL_AT_OPEN`` set (Ray's processes
inherit both, and do nothing):

- ``RAYSTUDIES_KILL_AT_OPEN=<prefix>`` with ``RAYSTUDIES_KILL_AT_SNAPSHOT=<N>``
  (default 1) and ``RAYSTUDIES_KILL_AFTER_ENDED=<K>`` (default 0): at the Nth
  time Tune copies its staging folder into the run folder
  (``pyarrow.fs.copy_files``, which Tune looks up at call time), or the first
  after it whose experiment state holds K trials ended and a file named so,
  the destination of the first file whose name starts
  with ``<prefix>`` is opened for writing (which truncates it, as pyarrow's own
  copy does) and the process group is killed. Nothing else of that snapshot is
  written. Every other copy is left to pyarrow, untouched.
- ``RAYSTUDIES_KILL_AT_OPEN=tuner.pkl``: Tune writes tuner.pkl into the run
  folder itself, when the Tuner is made (``fs.open_output_stream(...)`` then
  ``f.write(pickle.dumps(state))``): the kill comes between the two, from the
  ``pickle.dumps`` of that write (called by Tune's ``__init__``, through the
  driver's signing wrapper of that module's ``pickle``).

Hooked lazily (a meta-path finder wraps the module once it is loaded), so the
driver imports nothing it would not import anyway.
"""

from __future__ import annotations

import importlib.abc
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

TARGET = os.environ.get("RAYSTUDIES_KILL_AT_OPEN", "")
NTH = int(os.environ.get("RAYSTUDIES_KILL_AT_SNAPSHOT", "1"))
ENDED = int(os.environ.get("RAYSTUDIES_KILL_AFTER_ENDED", "0"))


def _die(where: str = "") -> None:
    sys.stderr.write(f"kill_at_open: SIGKILL at the open of {TARGET}{where}\n")   # the test's log only; no file
    sys.stderr.flush()
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _ended(folder: str, names: list[str]) -> tuple[int, int]:
    """Trials TERMINATED in the staged experiment state, and all its trials (written whole before the copy)."""
    import json

    name = max(n for n in names if n.startswith("experiment_state-"))
    with open(os.path.join(folder, name)) as f:
        trials = [json.loads(entry) for entry, _ in json.load(f)["trial_data"]]
    return sum(t.get("status") == "TERMINATED" for t in trials), len(trials)


def _patch_pyarrow_fs(module: Any) -> None:
    original = module.copy_files
    seen = [0]

    def copy_files(source: Any, destination: Any, source_filesystem: Any = None,
                   destination_filesystem: Any = None, **kwargs: Any) -> Any:
        if isinstance(source, str) and os.path.isdir(source):
            names = sorted(os.listdir(source))
            if any(n.startswith("experiment_state-") for n in names):   # Tune's staging folder: a snapshot
                seen[0] += 1
                targets = [n for n in names if n.startswith(TARGET) and os.path.isfile(os.path.join(source, n))]
                ended, total = _ended(source, names)
                if seen[0] >= NTH and ended >= ENDED and targets:
                    dest = f"{str(destination).rstrip('/')}/{targets[0]}"
                    if destination_filesystem is not None:
                        destination_filesystem.open_output_stream(dest)   # created or truncated, as pyarrow's copy does
                    else:
                        open(dest, "wb")  # noqa: SIM115 (left open: the process dies next)
                    _die(f" (snapshot {seen[0]}, {ended} of {total} trials ended)")
        return original(source, destination, source_filesystem=source_filesystem,
                        destination_filesystem=destination_filesystem, **kwargs)

    module.copy_files = copy_files


def _patch_tuner_internal(module: Any) -> None:
    pickle = module.pickle

    class KillingPickle:
        def __getattr__(self, name: str) -> Any:
            return getattr(pickle, name)

        @staticmethod
        def dumps(obj: Any, *args: Any, **kwargs: Any) -> bytes:
            caller = sys._getframe(1)
            for _ in range(3):   # the driver's own wrapper (studies._compat.tune_pickles_checked) may come between
                if caller is None:
                    break
                if caller.f_code.co_name == "__init__" and "storage" in caller.f_locals \
                        and caller.f_code.co_filename.endswith("tuner_internal.py"):   # tuner.pkl, just opened
                    _die()
                caller = caller.f_back
            return pickle.dumps(obj, *args, **kwargs)

    module.pickle = KillingPickle()


class _AfterImport(importlib.abc.MetaPathFinder):
    def __init__(self, patches: dict[str, Callable[[Any], None]]) -> None:
        self.patches = patches

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        patch = self.patches.pop(name, None)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                def exec_module(module: Any, load: Callable[[Any], None] = spec.loader.exec_module,
                                patch: Callable[[Any], None] = patch) -> None:
                    load(module)
                    patch(module)

                spec.loader.exec_module = exec_module
                return spec
        return None


if TARGET and sys.argv and sys.argv[0].replace(os.sep, "/").endswith("studies/run.py"):
    if TARGET == "tuner.pkl":
        sys.meta_path.insert(0, _AfterImport({"ray.tune.impl.tuner_internal": _patch_tuner_internal}))
    else:
        sys.meta_path.insert(0, _AfterImport({"pyarrow.fs": _patch_pyarrow_fs}))
