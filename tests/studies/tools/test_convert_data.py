"""Plain arrays -> a family's HDF5 schema -> the same loader as --data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data.hdf5 import load_hdf5
from core.data.motion import SCHEMA, generate_motion
from studies.tools.convert_data import main


def test_npz_round_trip(tmp_path: Path) -> None:
    arrays = generate_motion(num_sequences=6, min_length=8, max_length=12, seed=1)
    np.savez(tmp_path / "in.npz", **arrays)
    assert main(["mdn_motion", str(tmp_path / "in.npz"), str(tmp_path / "out.h5")]) == 0
    back = load_hdf5(tmp_path / "out.h5", SCHEMA)
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)


def test_folder_with_csv_and_npy(tmp_path: Path) -> None:
    arrays = generate_motion(num_sequences=5, min_length=8, max_length=10, seed=2)
    folder = tmp_path / "plain"
    folder.mkdir()
    np.save(folder / "keypoints.npy", arrays["keypoints"])
    np.save(folder / "emotion.npy", arrays["emotion"])
    np.savetxt(folder / "lengths.csv", arrays["lengths"], delimiter=",", fmt="%d")
    np.savetxt(folder / "label.csv", arrays["label"], delimiter=",", fmt="%d")
    assert main(["mdn_motion", str(folder), str(tmp_path / "out.h5")]) == 0
    np.testing.assert_array_equal(load_hdf5(tmp_path / "out.h5", SCHEMA)["lengths"], arrays["lengths"])


@pytest.mark.parametrize("edit, fragment", [
    (lambda a: a.pop("emotion"), "missing dataset 'emotion'"),
    (lambda a: a.update(keypoints=a["keypoints"][..., 0]), "dataset 'keypoints' has shape"),
    (lambda a: a.update(label=a["label"] + 10), "dataset 'label' must lie in [0, 4)"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys, edit, fragment: str) -> None:
    arrays = generate_motion(num_sequences=4, min_length=8, max_length=10, seed=3)
    edit(arrays)
    np.savez(tmp_path / "in.npz", **arrays)
    assert main(["mdn_motion", str(tmp_path / "in.npz"), str(tmp_path / "out.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err
    assert not (tmp_path / "out.h5").exists()
