"""Convert plain arrays into a family's HDF5 schema, for ``--data``.

    python -m studies.tools.convert_data mdn_motion my_arrays.npz my_data.h5
    python -m studies.tools.convert_data au2blend my_folder/ my_data.h5

The input is a ``.npz`` holding one array per dataset of the family's schema
(names as in the README tables), or a folder with one ``<dataset>.npy`` or
``<dataset>.csv`` per dataset (CSV for 1-D and 2-D arrays: one row per first-axis
entry, no header). The arrays go through the same validation as ``--data``
before anything is written; the output is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from core.data.hdf5 import DataFileError, validate_arrays, write_hdf5
from core.experiments.registry import family_names, get_family


def _read_inputs(source: Path, names: list[str]) -> dict[str, np.ndarray]:
    if source.is_file() and source.suffix == ".npz":
        with np.load(source, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files if k in names}
    if source.is_dir():
        out = {}
        for name in names:
            npy, csv = source / f"{name}.npy", source / f"{name}.csv"
            if npy.is_file():
                out[name] = np.load(npy, allow_pickle=False)
            elif csv.is_file():
                arr = np.loadtxt(csv, delimiter=",", ndmin=2)
                out[name] = arr[:, 0] if arr.shape[1] == 1 else arr
                if np.all(out[name] == np.round(out[name])) and name in ("lengths", "label", "sequence", "action"):
                    out[name] = out[name].astype(np.int64)
        return out
    raise DataFileError(f"{source}: expected a .npz file or a folder of <dataset>.npy / <dataset>.csv files")


def convert(family: str, source: Path, target: Path) -> Path:
    if family not in family_names():
        raise DataFileError(f"unknown family {family!r} (known: {', '.join(family_names())})")
    data = get_family(family).data
    schema = data.schema
    try:
        arrays = _read_inputs(source, list(schema))
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataFileError):
            raise
        raise DataFileError(f"{source}: cannot read ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    validate_arrays(arrays, schema, str(source))
    data.check(arrays, str(source))
    if target.exists():
        raise DataFileError(f"{target}: already exists (nothing overwritten)")
    write_hdf5(target, {k: arrays[k] for k in schema if k in arrays}, attrs={"converted_from": str(source), "family": family})
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.tools.convert_data", description=__doc__.split("\n\n")[0])
    p.add_argument("family", help=f"one of {', '.join(family_names())}")
    p.add_argument("source", type=Path, help=".npz file, or a folder of <dataset>.npy / .csv files")
    p.add_argument("target", type=Path, help="the HDF5 file to write")
    args = p.parse_args(argv)
    try:
        path = convert(args.family, args.source, args.target)
    except DataFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}; train on it with: python studies/run.py STUDY --data {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
