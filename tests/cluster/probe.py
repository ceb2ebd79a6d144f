"""A user trainable that records where it ran and how many trials ran at once.

Trials meet at a named ``Gate`` actor: each arrives, waits until ``expected``
trials are running together (or a timeout), records the peak, and leaves. If
the resources allowed fewer trials at once than expected, the peak says so.
"""

from __future__ import annotations

import os
import time

import ray
from ray import tune

GATE_NAME = "raystudies-test-gate"


@ray.remote(num_cpus=0)
class Gate:
    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    def arrive(self) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        return self.running

    def leave(self) -> None:
        self.running -= 1

    def get_peak(self) -> int:
        return self.peak


def probe(config: dict) -> None:
    gate = ray.get_actor(GATE_NAME, namespace=config.get("gate_namespace", "raystudies-tests"))
    start = time.time()
    ray.get(gate.arrive.remote())
    deadline = start + float(config.get("gate_timeout_s", 60))
    while ray.get(gate.get_peak.remote()) < int(config["expected_concurrency"]) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    peak = ray.get(gate.get_peak.remote())
    ray.get(gate.leave.remote())
    tune.report({
        "epoch": 1, "score": float(config.get("x", 0.0)), "peak": peak,
        "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "node_id": ray.get_runtime_context().get_node_id(),
        "start": start, "end": time.time(),
    })
