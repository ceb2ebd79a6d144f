"""One HDF5 path for every data set: the synthetic cache and a user's own file.

A family describes its file as a schema (dataset name -> dtype kind and a
shape with symbolic dimensions such as ``("N", "T", 17, 2)``); the same
validation runs on the cache we generate and on a file passed with ``--data``,
so a real data set that loads here trains exactly like the synthetic one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

# gzip level 4: measured on the motion cache (benchmarks/data_cache.py) it is
# within a few % of level 9's size at a fraction of the write time, and reads
# at the same speed as every other level.
GZIP_LEVEL = 4


class DataFileError(ValueError):
    """A data file is missing, unreadable or does not match its family's schema."""


@dataclass(frozen=True)
class DatasetSpec:
    """What one dataset in the file must look like.

    ``kind`` is a numpy dtype kind: ``"f"`` float, ``"i"`` integer (unsigned
    accepted), ``"b"`` bool. ``shape`` mixes fixed sizes and symbolic names that
    must agree across datasets (every ``"N"`` is the same number).
    """

    kind: str
    shape: tuple[int | str, ...]
    description: str = ""


Schema = Mapping[str, DatasetSpec]


def _kind_ok(dtype: np.dtype, kind: str) -> bool:
    if kind == "i":
        return dtype.kind in "iu"
    return dtype.kind == kind


def _describe_shape(shape: Sequence[int | str]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def validate_arrays(arrays: Mapping[str, np.ndarray], schema: Schema, source: str) -> dict[str, int]:
    """Check names, dtypes and shapes; return the bound symbolic dimensions."""
    dims: dict[str, int] = {}
    for name, spec in schema.items():
        if name not in arrays:
            raise DataFileError(
                f"{source}: missing dataset '{name}' (expected {spec.kind}-typed "
                f"{_describe_shape(spec.shape)}: {spec.description})"
            )
        arr = arrays[name]
        if not _kind_ok(arr.dtype, spec.kind):
            raise DataFileError(
                f"{source}: dataset '{name}' has dtype {arr.dtype}, expected kind '{spec.kind}' "
                f"({'float' if spec.kind == 'f' else 'integer' if spec.kind == 'i' else 'bool'})"
            )
        if arr.ndim != len(spec.shape):
            raise DataFileError(
                f"{source}: dataset '{name}' has shape {tuple(arr.shape)}, expected "
                f"{_describe_shape(spec.shape)}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if isinstance(want, int):
                ok = want == got
            else:
                ok = dims.setdefault(want, got) == got
            if not ok:
                bound = {k: v for k, v in dims.items() if k in spec.shape}
                raise DataFileError(
                    f"{source}: dataset '{name}' has shape {tuple(arr.shape)}, expected "
                    f"{_describe_shape(spec.shape)} (axis {axis}; bound so far: {bound})"
                )
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise DataFileError(f"{source}: dataset '{name}' contains NaN or inf values")
    return dims


def write_hdf5(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, object] | None = None) -> None:
    """Write arrays atomically (temp file + rename), so a crash or a concurrent
    writer never leaves a half-written cache behind. The file is built in memory
    and then written with plain file I/O: HDF5 that runs out of disk mid-write
    fails in its close with a RuntimeError and leaves a state that crashed the
    interpreter at exit (SIGSEGV, seen with a full --cache-dir); a plain write
    fails with an OSError (ENOSPC) and nothing else."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if arr.ndim == 0:
                f.create_dataset(name, data=arr)
            else:
                f.create_dataset(name, data=arr, compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value if not isinstance(value, (dict, list)) else json.dumps(value)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(buffer.getbuffer())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_hdf5(path: str | os.PathLike, schema: Schema) -> dict[str, np.ndarray]:
    """Read every dataset the schema names into memory and validate it."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            for name in schema:
                link = f.get(name, getlink=True)
                if link is not None and not isinstance(link, h5py.HardLink):
                    # an external or soft link reads another file (or place) than the one named on the command line
                    raise DataFileError(f"{path}: dataset '{name}' is a {type(link).__name__} (to "
                                        f"{getattr(link, 'filename', '')}{getattr(link, 'path', '')}), expected the data itself")
            arrays = {name: f[name][()] for name in schema if name in f and isinstance(f[name], h5py.Dataset)}
    except OSError as exc:
        raise DataFileError(f"{path}: not a readable HDF5 file ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    validate_arrays(arrays, schema, str(path))
    return arrays


def cached_hdf5(
    cache_dir: str | os.PathLike,
    name: str,
    params: Mapping[str, object],
    generate: Callable[[], Mapping[str, np.ndarray]],
    schema: Schema,
) -> Path:
    """Path of the HDF5 cache for ``generate(**params)``, building it on first use.

    The file name carries a hash of the generator parameters, so a different
    size or seed never reads a stale cache.
    """
    key = hashlib.sha1(json.dumps(dict(params), sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"{name}-{key}.h5"
    if not path.is_file():
        arrays = generate()
        validate_arrays(arrays, schema, f"generated {name}")
        write_hdf5(path, arrays, attrs={"generator": name, "params": dict(params)})
    return path
