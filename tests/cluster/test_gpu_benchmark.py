"""benchmarks/gpu_packing.py: its one-line refusal without CUDA, and the device
check it runs on a GPU machine (fed known-good and known-bad trial records)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_packing  # noqa: E402

UUIDS = {"0": "aaaa-0", "1": "bbbb-1"}


def _record(where: Path, trial: str, **seen) -> None:
    (where / f"device_{trial}.json").write_text(json.dumps(
        {"ray_gpu_ids": ["1"], "cuda_visible_devices": "1", "torch_device_count": 1, "torch_uuid": "GPU-bbbb-1", **seen}))


def test_without_cuda_it_says_so_in_one_line_and_exits_0() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the benchmark would run")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_packing.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().count("\n") == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("gpu_packing: no CUDA device here")


def test_trials_that_each_saw_their_own_gpu_pass(tmp_path: Path) -> None:
    _record(tmp_path, "a")
    _record(tmp_path, "b", ray_gpu_ids=["0"], cuda_visible_devices="0", torch_uuid="aaaa-0")
    assert gpu_packing.device_problems(tmp_path, UUIDS, trials=2) == []


@pytest.mark.parametrize("seen, words", [
    ({"torch_uuid": "GPU-aaaa-0"}, "torch's cuda:0 is GPU-aaaa-0, Ray assigned GPU 1"),
    ({"torch_device_count": 2, "cuda_visible_devices": "0,1"}, "'torch_device_count': 2"),
    ({"cuda_visible_devices": ""}, "'cuda_visible_devices': ''"),
    ({"ray_gpu_ids": ["0", "1"], "cuda_visible_devices": "0,1"}, "'ray_gpu_ids': ['0', '1']"),
])
def test_a_trial_that_saw_another_device_fails_the_check(tmp_path: Path, seen: dict, words: str) -> None:
    _record(tmp_path, "a")
    _record(tmp_path, "b", **seen)
    problems = gpu_packing.device_problems(tmp_path, UUIDS, trials=2)
    assert len(problems) == 1 and problems[0].startswith("device_b") and words in problems[0], problems


def test_a_trial_with_no_record_fails_the_check(tmp_path: Path) -> None:
    _record(tmp_path, "a")
    assert gpu_packing.device_problems(tmp_path, UUIDS, trials=2) == ["1 device records for 2 trials"]
