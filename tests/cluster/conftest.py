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
    before = dict(os.environ)
    ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, namespace="raystudies-tests")
    # ray.init sets RAY_AUTH_MODE=token (and more) in this process's environment; every CLI and cluster
    # a later test starts would inherit it (a two-node cluster with auth, a driver with no token there).
    # This process's Ray has read its config already.
    for key in [k for k in os.environ if os.environ[k] != before.get(k)]:
        if key in before:
            os.environ[key] = before[key]
        else:
            del os.environ[key]
    yield ray
    ray.shutdown()
