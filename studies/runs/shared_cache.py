"""What a family's trials share (``FamilyDef.shared``: a model trained once, a
probe), computed on the driver once and cached beside the data sets.

Why cache: for a study of inference-time knobs (sampling, decoding, a
threshold) the shared part is most of the cost, and ``--resume``, ``--confirm``
and every later run of the same study would otherwise pay it again. The key is
every field it depends on (``FamilyDef.shared_fields``) and the data it was
built from (a ``--data`` file by its content hash), so a change to either
builds it anew.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from studies.runs.run_folder import file_sha256


def shared_key(family: Any, config: Any, data_path: str | None) -> str:
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name in family.shared_fields}
    what = {"family": family.name, "fields": fields, "data": file_sha256(Path(data_path)) if data_path else "synthetic"}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_shared(family: Any, config: Any, arrays: dict[str, np.ndarray], *, data_path: str | None,
                  cache_dir: str | Path) -> dict[str, np.ndarray]:
    path = Path(cache_dir) / f"{family.name}-shared-{shared_key(family, config, data_path)}.npz"
    if path.is_file():
        with np.load(path) as saved:
            return {k: saved[k] for k in saved.files}
    print(f"{family.name}: building what every trial shares (once; cached in {path.name})...", file=sys.stderr, flush=True)
    started = time.time()
    shared = family.shared(config, arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **shared)
    os.replace(tmp, path)   # whole or absent: a killed build leaves no half file under the real name
    print(f"{family.name}: built in {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    return shared
