"""HDF5 data files: round trip, validation messages, cache, synthetic motion set."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from core.data.hdf5 import (
    GZIP_LEVEL,
    DataFileError,
    DatasetSpec,
    cached_hdf5,
    load_hdf5,
    validate_arrays,
    write_hdf5,
)
from core.data.motion import (
    EMOTIONS,
    JOINTS,
    NUM_EMOTIONS,
    NUM_JOINTS,
    SCHEMA,
    check_motion_arrays,
    generate_motion,
)

SMALL = {
    "x": DatasetSpec("f", ("N", "T", 3), "features"),
    "n": DatasetSpec("i", ("N",), "counts"),
    "m": DatasetSpec("b", ("N", "T"), "mask"),
}


def _small_arrays(N=4, T=5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(size=(N, T, 3)).astype(np.float32),
        "n": np.arange(N, dtype=np.int64),
        "m": rng.random((N, T)) > 0.5,
    }


@pytest.fixture(scope="module")
def motion():
    return generate_motion(num_sequences=12, min_length=8, max_length=20, seed=3)


# ---------------------------------------------------------------- round trip

def test_round_trip_small(tmp_path):
    arrays = _small_arrays()
    path = tmp_path / "sub" / "data.h5"
    write_hdf5(path, arrays, attrs={"name": "small", "params": {"a": 1}, "list": [1, 2]})
    loaded = load_hdf5(path, SMALL)
    assert set(loaded) == set(SMALL)
    for k, v in arrays.items():
        assert loaded[k].dtype == v.dtype
        np.testing.assert_array_equal(loaded[k], v)
    with h5py.File(path, "r") as f:
        assert f.attrs["name"] == "small"
        assert json.loads(f.attrs["params"]) == {"a": 1}
        assert json.loads(f.attrs["list"]) == [1, 2]
    # atomic write: no temp file left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.h5"]


def test_round_trip_motion(tmp_path, motion):
    path = tmp_path / "motion.h5"
    write_hdf5(path, motion)
    loaded = load_hdf5(path, SCHEMA)
    for k, v in motion.items():
        np.testing.assert_array_equal(loaded[k], v)
        assert loaded[k].dtype == v.dtype


def test_compression_is_gzip(tmp_path):
    path = tmp_path / "data.h5"
    write_hdf5(path, {**_small_arrays(), "scalar": np.float64(3.5)})
    with h5py.File(path, "r") as f:
        for name in ("x", "n", "m"):
            assert f[name].compression == "gzip"
            assert f[name].compression_opts == GZIP_LEVEL
            assert f[name].shuffle
        assert f["scalar"].compression is None
        assert f["scalar"][()] == 3.5


def test_load_ignores_extra_datasets(tmp_path):
    path = tmp_path / "data.h5"
    write_hdf5(path, {**_small_arrays(), "extra": np.zeros(7)})
    assert set(load_hdf5(path, SMALL)) == {"x", "n", "m"}


def test_unsigned_ints_accepted():
    arrays = {**_small_arrays(), "n": np.arange(4, dtype=np.uint8)}
    assert validate_arrays(arrays, SMALL, "src") == {"N": 4, "T": 5}


# ---------------------------------------------------------------- validation errors

def _bad_file(tmp_path, arrays) -> str:
    path = tmp_path / "bad.h5"
    write_hdf5(path, arrays)
    return str(path)


@pytest.mark.parametrize(
    "change, dataset, fragment",
    [
        (lambda a: a.pop("n"), "n", "missing dataset"),
        (lambda a: a.update(x=np.zeros((4, 5, 3), dtype=np.int32)), "x", "dtype int32"),
        (lambda a: a.update(n=np.zeros(4, dtype=np.float64)), "n", "expected kind 'i'"),
        (lambda a: a.update(m=np.zeros((4, 5), dtype=np.int8)), "m", "expected kind 'b'"),
        (lambda a: a.update(x=np.zeros((4, 5, 2), dtype=np.float32)), "x", "axis 2"),
        (lambda a: a.update(x=np.zeros((4, 5), dtype=np.float32)), "x", "expected (N, T, 3)"),
        (lambda a: a.update(n=np.arange(3)), "n", "bound so far: {'N': 4}"),
        (lambda a: a.update(m=np.zeros((4, 6), dtype=bool)), "m", "axis 1"),
        (lambda a: a["x"].__setitem__((1, 2, 0), np.nan), "x", "NaN or inf"),
        (lambda a: a["x"].__setitem__((0, 0, 0), np.inf), "x", "NaN or inf"),
    ],
    ids=["missing", "dtype-int-for-float", "dtype-float-for-int", "dtype-int-for-bool", "fixed-dim",
         "ndim", "symbolic-N", "symbolic-T", "nan", "inf"],
)
def test_validation_errors_name_file_and_dataset(tmp_path, change, dataset, fragment):
    arrays = _small_arrays()
    change(arrays)
    path = _bad_file(tmp_path, arrays)
    with pytest.raises(DataFileError) as info:
        load_hdf5(path, SMALL)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ")
    assert f"'{dataset}'" in msg
    assert fragment in msg


def test_validate_arrays_source_in_message():
    arrays = _small_arrays()
    arrays["x"] = arrays["x"][:, :, :2]
    with pytest.raises(DataFileError, match=r"^my source: dataset 'x' has shape \(4, 5, 2\)"):
        validate_arrays(arrays, SMALL, "my source")


def test_motion_schema_errors_name_dataset(tmp_path, motion):
    arrays = dict(motion)
    arrays["emotion"] = arrays["emotion"][:, :, :3]
    path = _bad_file(tmp_path, arrays)
    with pytest.raises(DataFileError, match="'emotion'") as info:
        load_hdf5(path, SCHEMA)
    assert path in str(info.value)


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("this is not HDF5\n" * 10)
    with pytest.raises(DataFileError) as info:
        load_hdf5(path, SMALL)
    assert str(path) in str(info.value)
    assert "not a readable HDF5 file" in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.h5"
    with pytest.raises(DataFileError) as info:
        load_hdf5(path, SMALL)
    assert str(info.value) == f"{path}: no such file"


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_hdf5(tmp_path, SMALL)


def test_group_is_not_a_dataset(tmp_path):
    path = tmp_path / "group.h5"
    arrays = _small_arrays()
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=arrays["x"])
        f.create_dataset("m", data=arrays["m"])
        f.create_group("n")
    with pytest.raises(DataFileError, match="missing dataset 'n'"):
        load_hdf5(path, SMALL)


# ---------------------------------------------------------------- cache

def test_cached_hdf5_builds_once(tmp_path):
    calls = []

    def gen(seed):
        calls.append(seed)
        return generate_motion(num_sequences=4, min_length=5, max_length=8, seed=seed)

    p1 = cached_hdf5(tmp_path, "motion", {"seed": 1, "n": 4}, lambda: gen(1), SCHEMA)
    mtime = p1.stat().st_mtime_ns
    p2 = cached_hdf5(tmp_path, "motion", {"n": 4, "seed": 1}, lambda: gen(1), SCHEMA)  # key order irrelevant
    assert p1 == p2 and calls == [1]
    assert p2.stat().st_mtime_ns == mtime
    assert p1.name.startswith("motion-") and p1.suffix == ".h5"
    p3 = cached_hdf5(tmp_path, "motion", {"seed": 2, "n": 4}, lambda: gen(2), SCHEMA)
    assert p3 != p1 and calls == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p1.name, p3.name])
    np.testing.assert_array_equal(load_hdf5(p1, SCHEMA)["keypoints"], gen(1)["keypoints"])
    with h5py.File(p3, "r") as f:
        assert f.attrs["generator"] == "motion"
        assert json.loads(f.attrs["params"]) == {"seed": 2, "n": 4}


def test_cached_hdf5_rejects_bad_generator_output(tmp_path):
    def gen():
        arrays = generate_motion(num_sequences=4, min_length=5, max_length=8)
        arrays["keypoints"][0, 0, 0, 0] = np.nan
        return arrays

    with pytest.raises(DataFileError, match="generated motion: dataset 'keypoints' contains NaN"):
        cached_hdf5(tmp_path, "motion", {"seed": 0}, gen, SCHEMA)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- synthetic motion

def test_generate_motion_deterministic(motion):
    again = generate_motion(num_sequences=12, min_length=8, max_length=20, seed=3)
    for k in motion:
        np.testing.assert_array_equal(motion[k], again[k])
    other = generate_motion(num_sequences=12, min_length=8, max_length=20, seed=4)
    assert not np.array_equal(motion["keypoints"], other["keypoints"])


def test_generate_motion_matches_schema(motion):
    assert validate_arrays(motion, SCHEMA, "generated") == {"N": 12, "T": 20}
    assert motion["keypoints"].shape == (12, 20, NUM_JOINTS, 2) and motion["keypoints"].dtype == np.float32
    assert motion["emotion"].shape == (12, 20, NUM_EMOTIONS) and motion["emotion"].dtype == np.float32
    assert motion["lengths"].dtype == np.int64 and motion["label"].dtype == np.int64
    assert NUM_JOINTS == len(JOINTS) == 17 and NUM_EMOTIONS == len(EMOTIONS) == 4
    assert ((motion["lengths"] >= 8) & (motion["lengths"] <= 20)).all()
    # labels are balanced: a permutation of arange(N) % 4
    assert np.bincount(motion["label"], minlength=4).tolist() == [3, 3, 3, 3]
    check_motion_arrays(motion, "generated")


def test_generate_motion_padding_and_emotion(motion):
    for i, L in enumerate(motion["lengths"]):
        assert not motion["keypoints"][i, L:].any()
        assert not motion["emotion"][i, L:].any()
        assert np.abs(motion["keypoints"][i, :L]).sum(axis=(1, 2)).min() > 0
        emo = motion["emotion"][i, :L]
        assert (emo >= 0).all() and (emo <= 1).all()
        # only the labelled emotion is non-zero
        others = np.delete(emo, motion["label"][i], axis=1)
        assert not others.any()
        assert (emo[:, motion["label"][i]] > 0).all()


def test_generate_motion_rejects_bad_lengths():
    with pytest.raises(ValueError, match="min_length"):
        generate_motion(num_sequences=2, min_length=2, max_length=8)
    with pytest.raises(ValueError, match="min_length"):
        generate_motion(num_sequences=2, min_length=9, max_length=8)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda a: a["lengths"].__setitem__(2, 2), "dataset 'lengths' has 1 values outside [3, 20] (first at index 2: 2)"),
        (lambda a: a["lengths"].__setitem__(0, 21), "dataset 'lengths' has 1 values outside [3, 20] (first at index 0: 21)"),
        (lambda a: a["label"].__setitem__(5, 4), "dataset 'label' must lie in [0, 4), found 0..4"),
        (lambda a: a["label"].__setitem__(5, -1), "dataset 'label' must lie in [0, 4), found -1..3"),
    ],
)
def test_check_motion_arrays_rejects(motion, change, fragment):
    arrays = {k: v.copy() for k, v in motion.items()}
    change(arrays)
    with pytest.raises(DataFileError) as info:
        check_motion_arrays(arrays, "file.h5")
    assert str(info.value) == f"file.h5: {fragment}"


def test_check_motion_arrays_needs_two_sequences(motion):
    arrays = {k: v[:1].copy() for k, v in motion.items()}
    with pytest.raises(DataFileError, match="at least 2 sequences"):
        check_motion_arrays(arrays, "file.h5")
