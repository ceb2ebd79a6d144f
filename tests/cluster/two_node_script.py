"""Run by test_two_nodes.py in its own process: a head and a worker node
(ray.cluster_utils.Cluster) with different resources, a study of probe trials
through the real Tuner builder, and a JSON summary on stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from studies.spec.study import load_spec  # noqa: E402
from studies.tune.tuner import build_tuner, concurrency  # noqa: E402
from tests.cluster.probe import GATE_NAME, Gate  # noqa: E402


def main(tmp: Path) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head_node": 1}})
    cluster.add_node(num_cpus=1, resources={"worker_node": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="raystudies-tests",
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        (tmp / "space.yaml").write_text("x: {type: float, low: 0.0, high: 1.0}\n")
        (tmp / "probe.yaml").write_text(
            "trainable: tests.cluster.probe:probe\nmetric: score\nmode: max\nsearch_space: space.yaml\n"
            "budget: {max_epochs: 1, grace_period: 1, num_samples: 4, max_failures: 0}\n"
            "resources: {cpus_per_trial: 1}\nconfig: {expected_concurrency: 2, gate_timeout_s: 60}\n")
        spec = load_spec(tmp / "probe.yaml")
        n = concurrency(spec, ray.cluster_resources())
        gate = Gate.options(name=GATE_NAME).remote()
        run_dir = tmp / "results" / "probe" / "two-nodes"
        run_dir.mkdir(parents=True)
        build_tuner(spec, run_dir, None, max_concurrent=n).fit()
        nodes = {n["NodeID"]: ("head" if n["Resources"].get("head_node") else "worker") for n in ray.nodes() if n["Alive"]}
        print(json.dumps({"concurrency": n, "peak": ray.get(gate.get_peak.remote()), "nodes": nodes, "run_dir": str(run_dir)}))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
