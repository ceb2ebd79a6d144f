"""Fractional-GPU packing on a real GPU: trials per hour and GPU utilisation at
1, 0.5 and 0.25 GPU per trial, bf16 autocast off and on, for ``mdn_ramp`` and
one image family (``film_placement``: the hand_pose depth-image CNN).

    python benchmarks/gpu_packing.py [--studies mdn_ramp film_placement] [--epochs 4]

Needs CUDA; on a machine without it, it says so in one line and exits 0. About
4-5 minutes on one GPU: each of the 12 settings runs ``2 x`` as many trials as
fit at once (every trial to its full budget, no early stopping) through the
platform's own Tuner (``studies.tune.tuner.build_tuner``) in one Ray session.

Per setting: trials per hour (trials / wall of ``Tuner.fit``), the mean and
peak GPU utilisation and the peak memory used, sampled every 0.5 s with
``nvidia-smi`` (or NVML through ``nvidia-ml-py`` when it is installed), and a
device check: every trial records Ray's GPU ids, ``CUDA_VISIBLE_DEVICES``,
how many devices torch sees and the UUID of torch's ``cuda:0``; the check
fails unless each trial saw exactly one device, the one Ray assigned it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_CACHE, REPO, machine  # noqa: E402

FRACTIONS = (1.0, 0.5, 0.25)
PRECISIONS = ("fp32", "bf16")


def probed_family(config: dict[str, Any], data: dict[str, Any], family: str, probe_dir: str) -> None:
    """The family's own trainable, after writing which device this trial got into
    ``probe_dir`` (one machine: the driver reads it back). Defined in ``__main__``, so
    Ray pickles it by value and the workers need not import benchmarks/."""
    import ray
    import torch
    from ray import tune

    from trainables.family import train_family

    seen = {"ray_gpu_ids": [str(i) for i in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "torch_device_count": torch.cuda.device_count(),
            "torch_uuid": str(torch.cuda.get_device_properties(0).uuid) if torch.cuda.is_available() else None}
    Path(probe_dir, f"device_{tune.get_context().get_trial_id()}.json").write_text(json.dumps(seen))
    train_family(config, data=data, family=family)


class GpuSampler:
    """GPU utilisation (%) and memory used (MiB) of every GPU, every ``period`` s, in a thread."""

    def __init__(self, period: float = 0.5):
        self.period, self.samples, self._stop = period, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> list[tuple[float, float]]:
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            return [(float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu), pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20)
                    for h in handles]
        except ImportError:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
            return [tuple(float(v) for v in line.split(",")) for line in out.strip().splitlines()]  # type: ignore[misc]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._read())
            self._stop.wait(self.period)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> tuple[float, float, float]:
        """(mean utilisation, peak utilisation, peak memory MiB) over the GPUs' busiest one."""
        if not self.samples:
            return 0.0, 0.0, 0.0
        util = [max(u for u, _ in s) for s in self.samples]
        return sum(util) / len(util), max(util), max(max(m for _, m in s) for s in self.samples)


def gpu_uuids() -> dict[str, str]:
    out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"], capture_output=True,
                         text=True, timeout=30).stdout
    return {i.strip(): u.strip().removeprefix("GPU-") for i, u in (line.split(",") for line in out.strip().splitlines())}


def device_problems(probe_dir: Path, uuids: dict[str, str], trials: int) -> list[str]:
    """What is wrong with the devices the trials saw (empty: each saw exactly the GPU Ray assigned it)."""
    found = sorted(probe_dir.glob("device_*.json"))
    problems = [] if len(found) == trials else [f"{len(found)} device records for {trials} trials"]
    for path in found:
        seen = json.loads(path.read_text())
        ids = seen["ray_gpu_ids"]
        if len(ids) != 1 or seen["cuda_visible_devices"] != ids[0] or seen["torch_device_count"] != 1:
            problems.append(f"{path.stem}: {seen}")
        elif (seen["torch_uuid"] or "").removeprefix("GPU-") != uuids.get(ids[0]):
            problems.append(f"{path.stem}: torch's cuda:0 is {seen['torch_uuid']}, Ray assigned GPU {ids[0]} "
                            f"({uuids.get(ids[0])})")
    return problems


def one_setting(study: str, fraction: float, precision: str, epochs: int, gpus: float, where: Path,
                uuids: dict[str, str]) -> dict[str, Any]:
    from ray import tune

    from studies.driver import load_family_data
    from studies.spec.study import load_spec, resolve_study_path
    from studies.tune.tuner import build_tuner, concurrency, fit, trial_resources

    at_once = max(1, int(gpus / fraction + 1e-9))
    overrides = [f"resources.gpus_per_trial={fraction}", "resources.cpus_per_trial=1", f"resources.precision={precision}",
                 f"budget.num_samples={2 * at_once}", f"budget.max_epochs={epochs}", f"budget.grace_period={epochs}",
                 f"budget.checkpoint_every={epochs}", "budget.max_failures=0"]
    spec = load_spec(resolve_study_path(study), smoke=True, overrides=overrides)
    data = load_family_data(spec, None, DEFAULT_CACHE)
    import ray

    n = concurrency(spec, ray.cluster_resources())
    run_dir = where / f"{study}_{fraction}_{precision}"
    probe_dir = where / f"devices_{study}_{fraction}_{precision}"
    run_dir.mkdir(parents=True)
    probe_dir.mkdir()
    trainable = tune.with_resources(
        tune.with_parameters(probed_family, data=data, family=spec.family, probe_dir=str(probe_dir)), trial_resources(spec))
    tuner = build_tuner(spec, run_dir, data, max_concurrent=n, trainable=trainable)
    with GpuSampler() as sampler:
        started = time.perf_counter()
        fit(tuner)
        wall = time.perf_counter() - started
    trials = len(list(run_dir.glob("trial_*/result.json")))
    mean_util, peak_util, peak_mem = sampler.summary()
    return {"study": study, "fraction": fraction, "precision": precision, "at_once": n, "trials": trials, "wall": wall,
            "per_hour": 3600 * trials / wall, "mean_util": mean_util, "peak_util": peak_util, "peak_mem": peak_mem,
            "problems": device_problems(probe_dir, uuids, trials)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", nargs="+", default=["mdn_ramp", "film_placement"])
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_packing: no CUDA device here (torch {torch.__version__}, built for CUDA {torch.version.cuda}); nothing measured")
        return 0
    import ray

    sys.path.insert(0, str(REPO))
    print(machine(), "|", torch.cuda.get_device_name(0), flush=True)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
    ray.init(address="local", include_dashboard=False, logging_level="WARNING")
    gpus = ray.cluster_resources().get("GPU", 0)
    uuids = gpu_uuids()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-packing-") as tmp:
            for study in args.studies:
                for fraction in FRACTIONS:
                    for precision in PRECISIONS:
                        row = one_setting(study, fraction, precision, args.epochs, gpus, Path(tmp), uuids)
                        rows.append(row)
                        print(f"  {study} {fraction} GPU/trial {precision}: {row['trials']} trials in {row['wall']:.1f} s, "
                              f"GPU {row['mean_util']:.0f}% mean", flush=True)
    finally:
        ray.shutdown()
    print(f"\n{gpus:g} GPU(s); {args.epochs} epochs per trial at smoke size, every trial to its full budget\n")
    print("| study | GPU per trial | precision | trials at once | trials | wall s | trials per hour | vs 1 GPU/trial "
          "| GPU util mean % | peak % | peak memory MiB | device check |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        base = next(b for b in rows if b["study"] == r["study"] and b["precision"] == r["precision"] and b["fraction"] == 1.0)
        print(f"| {r['study']} | {r['fraction']:g} | {r['precision']} | {r['at_once']} | {r['trials']} | {r['wall']:.1f} | "
              f"{r['per_hour']:.0f} | {r['per_hour'] / base['per_hour']:.2f}x | {r['mean_util']:.0f} | {r['peak_util']:.0f} | "
              f"{r['peak_mem']:.0f} | {'ok' if not r['problems'] else 'FAILED'} |")
    bad = [p for r in rows for p in r["problems"]]
    for p in bad:
        print(f"device check failed: {p}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
