"""What a family's trials share is built once and cached by every field it depends on and by the data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studies.runs.shared_cache import cached_shared


@dataclass
class _Config:
    width: int = 4       # shared
    seed: int = 0        # per trial: not in the key


class _Family:
    name = "fake"
    shared_fields = frozenset({"width"})

    def __init__(self) -> None:
        self.calls = 0

    def shared(self, config: _Config, arrays: dict) -> dict:
        self.calls += 1
        return {"shared/model/w": np.full(config.width, float(arrays["x"].sum()))}


def test_built_once_then_read_back(tmp_path: Path) -> None:
    fam, arrays = _Family(), {"x": np.arange(3.0)}
    first = cached_shared(fam, _Config(), arrays, data_path=None, cache_dir=tmp_path)
    again = cached_shared(fam, _Config(seed=5), arrays, data_path=None, cache_dir=tmp_path)
    assert fam.calls == 1 and np.array_equal(first["shared/model/w"], again["shared/model/w"])
    cached_shared(fam, _Config(width=5), arrays, data_path=None, cache_dir=tmp_path)
    assert fam.calls == 2                      # a shared field changed
    assert not list(tmp_path.glob("*.tmp.npz"))


def test_a_data_file_is_keyed_by_its_content(tmp_path: Path) -> None:
    fam, arrays = _Family(), {"x": np.arange(3.0)}
    data = tmp_path / "data.h5"
    data.write_bytes(b"one")
    cached_shared(fam, _Config(), arrays, data_path=str(data), cache_dir=tmp_path)
    cached_shared(fam, _Config(), arrays, data_path=str(data), cache_dir=tmp_path)
    data.write_bytes(b"two")
    cached_shared(fam, _Config(), arrays, data_path=str(data), cache_dir=tmp_path)
    assert fam.calls == 2
