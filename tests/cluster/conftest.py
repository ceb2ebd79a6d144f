from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_four_fake_gpus():
    """One in-process Ray for the session: 2 CPUs and 4 logical (fake) GPUs."""
    import ray

    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *paths])  # workers import tests.cluster.probe
    ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, namespace="raystudies-tests")
    yield ray
    ray.shutdown()
