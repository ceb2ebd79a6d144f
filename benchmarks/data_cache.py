"""HDF5 cache: build once vs load many times, and the gzip level trade-off.

    python benchmarks/data_cache.py [--sequences 384]

Prints, side by side in one run:

1. for each family's synthetic data set at its study's default size: the first
   load (generate, validate, write the cache, read it back), the cached load,
   the write alone, the file size, and how much faster loading the cache is
   than regenerating;
2. for the motion set: write and read times and file sizes at several gzip
   levels.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core.data.hdf5 as hdf5  # noqa: E402
from core.data.motion import SCHEMA, generate_motion  # noqa: E402
from core.experiments.registry import family_names, get_family  # noqa: E402


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def per_family() -> None:
    from studies.spec.study import load_spec, resolve_study_path

    print("| family (study) | first load s (generate + write + read) | cached load s | write s | MB on disk "
          "| MB in memory | regenerate / cached load |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for family in family_names():
        info = get_family(family)
        study = info.study
        spec = load_spec(resolve_study_path(study))
        config = info.config({**spec.config, "max_epochs": spec.budget.max_epochs})
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            arrays = info.load_data(config, data_path=None, cache_dir=tmp)
            first = time.perf_counter() - t
            cached = _best(lambda: info.load_data(config, data_path=None, cache_dir=tmp))
            (path,) = Path(tmp).glob("*.h5")
            size = path.stat().st_size
            write = _best(lambda: hdf5.write_hdf5(Path(tmp) / "copy.h5", arrays), 2)
        regenerate = max(first - write - cached, 0.0)
        memory = sum(a.nbytes for a in arrays.values())
        print(f"| {family} ({study}) | {first:.2f} | {cached:.3f} | {write:.2f} | {size / 1e6:.1f} | {memory / 1e6:.1f} "
              f"| {regenerate / cached:.0f}x |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequences", type=int, default=384)
    args = ap.parse_args()
    per_family()
    print()
    params = dict(num_sequences=args.sequences, min_length=32, max_length=64, seed=0)
    gen = _best(lambda: generate_motion(**params), 2)
    arrays = generate_motion(**params)
    raw = sum(a.nbytes for a in arrays.values())
    print(f"generate {args.sequences} sequences: {gen * 1000:.0f} ms  (raw {raw / 1e6:.2f} MB)")
    print(f"{'gzip':>5} {'write ms':>9} {'read ms':>8} {'MB':>6} {'ratio':>6} {'regen/read':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for level in (0, 1, 4, 9):
            hdf5.GZIP_LEVEL = level
            path = Path(tmp) / f"m{level}.h5"
            write = _best(lambda: hdf5.write_hdf5(path, arrays))
            read = _best(lambda: hdf5.load_hdf5(path, SCHEMA))
            size = path.stat().st_size
            print(f"{level:>5} {write * 1000:9.1f} {read * 1000:8.1f} {size / 1e6:6.2f} {raw / size:6.1f} {gen / read:11.1f}")


if __name__ == "__main__":
    main()
