"""Fractional-GPU packing through the real Tuner builder, on 4 logical GPUs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from studies.spec.study import load_spec
from studies.tune.tuner import build_tuner, concurrency
from tests.cluster.probe import GATE_NAME, Gate


def _spec(tmp_path: Path, *, gpus: float, samples: int, expected: int):
    (tmp_path / "probe_space.yaml").write_text("x: {type: float, low: 0.0, high: 1.0}\n")
    (tmp_path / "probe.yaml").write_text(
        "trainable: tests.cluster.probe:probe\nmetric: score\nmode: max\nsearch_space: probe_space.yaml\n"
        f"budget: {{max_epochs: 1, grace_period: 1, num_samples: {samples}, max_failures: 0}}\n"
        f"resources: {{cpus_per_trial: 0.1, gpus_per_trial: {gpus}}}\n"
        f"config: {{expected_concurrency: {expected}, gate_timeout_s: 90}}\n"
    )
    return load_spec(tmp_path / "probe.yaml")


def _results(run_dir: Path) -> list[dict]:
    out = []
    for path in run_dir.glob("trial_*/result.json"):
        out.append(json.loads(path.read_text().splitlines()[-1]))
    return out


@pytest.mark.parametrize("gpus, expected", [(0.25, 16), (1.0, 4)])
def test_trials_pack_onto_logical_gpus(ray_four_fake_gpus, tmp_path: Path, gpus: float, expected: int) -> None:
    ray = ray_four_fake_gpus
    spec = _spec(tmp_path, gpus=gpus, samples=expected, expected=expected)
    assert concurrency(spec, ray.cluster_resources()) == expected
    gate = Gate.options(name=GATE_NAME, namespace="raystudies-tests").remote()
    try:
        run_dir = tmp_path / "runs" / "probe"
        run_dir.mkdir(parents=True)
        build_tuner(spec, run_dir, None, max_concurrent=expected).fit()
        peak = ray.get(gate.get_peak.remote())
    finally:
        ray.kill(gate)
    results = _results(run_dir)
    assert len(results) == expected
    assert peak == expected, f"only {peak} trials ran at once, expected {expected}"
    # Each trial sees exactly its own assignment: one GPU id, mirrored in CUDA_VISIBLE_DEVICES.
    ids = [r["gpu_ids"] for r in results]
    assert all(len(i.split(",")) == 1 for i in ids)
    assert all(r["cuda_visible_devices"] == r["gpu_ids"] for r in results)
    per_gpu = Counter(ids)
    assert set(per_gpu) == {"0", "1", "2", "3"}
    assert max(per_gpu.values()) == round(1 / gpus) if gpus < 1 else max(per_gpu.values()) == 1
