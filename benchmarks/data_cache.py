"""HDF5 cache: build once vs load many times, and the gzip level trade-off.

    python benchmarks/data_cache.py [--sequences 384]

Prints, side by side in one run: time to generate the motion set, time to
write and read it at several gzip levels, file sizes, and the load-vs-regenerate
speed-up.
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


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequences", type=int, default=384)
    args = ap.parse_args()
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
