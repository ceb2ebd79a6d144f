"""Run by test_object_store.py in its own process: a head and a worker node
(ray.cluster_utils.Cluster, one CPU each) that a CLI driver joins with
--address; prints the address, then holds the cluster until stdin closes."""

from __future__ import annotations

import sys

from ray.cluster_utils import Cluster


def main() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    cluster.add_node(num_cpus=1, num_gpus=0)
    cluster.wait_for_nodes()
    print(cluster.address, flush=True)
    try:
        sys.stdin.read()   # the test closes it to stop the cluster
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
