"""The cluster launcher files are valid for the installed Ray's own validator."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


@pytest.mark.parametrize("name", ["cluster.yaml", "local.yaml"])
def test_launcher_config_is_valid(name: str) -> None:
    from ray.autoscaler._private.commands import prepare_config
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load((CLUSTER / name).read_text())
    validate_config(prepare_config(config))
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "raystudies" in setup       # the project is installed on every node
    assert any("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"])  # dashboard on loopback
