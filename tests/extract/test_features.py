"""Feature files: round trip, atomic writes, and refusal of broken or partial files."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from simcons.extract.errors import ExtractionError, FeatureFileError
from simcons.extract.features import read_features, temporary_path, write_features

ATTRS = {"model": "resnet18", "dataset": "wds/cars", "preprocessing": {"crop": 224}, "n": 3}


def _arrays(n: int = 3, d: int = 4):
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((n, d)).astype(np.float32)
    return feats, np.arange(n, dtype=np.int64), np.array([f"img-{i}-é" for i in range(n)])


def test_round_trip(tmp_path):
    path = tmp_path / "f" / "resnet18.h5"
    feats, labels, ids = _arrays()
    write_features(path, feats, labels, ids, ATTRS)
    got = read_features(path)
    np.testing.assert_array_equal(got.features, feats)
    np.testing.assert_array_equal(got.labels, labels)
    assert got.features.dtype == np.float32 and got.labels.dtype == np.int64
    assert list(got.sample_ids) == list(ids)
    assert got.attrs == ATTRS
    assert not temporary_path(path).exists()


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "cut.h5"
    write_features(path, *_arrays(50, 64), ATTRS)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatureFileError) as err:
        read_features(path)
    assert str(path) in str(err.value) and "simcons extract" in str(err.value)


def test_leftover_tmp_file_is_not_a_result(tmp_path):
    path = tmp_path / "half.h5"
    write_features(path, *_arrays(), ATTRS)
    os.replace(path, temporary_path(path))
    with pytest.raises(FeatureFileError, match="interrupted write"):
        read_features(path)
    with pytest.raises(FeatureFileError, match="interrupted write"):
        read_features(temporary_path(path))


def test_missing_file_and_missing_dataset(tmp_path):
    with pytest.raises(FeatureFileError, match="does not exist"):
        read_features(tmp_path / "absent.h5")
    path = tmp_path / "partial.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("features", data=np.zeros((2, 2), np.float32))
    with pytest.raises(FeatureFileError, match="lacks labels, sample_ids"):
        read_features(path)


def test_failed_write_keeps_old_file_and_leaves_no_tmp(tmp_path, monkeypatch):
    path = tmp_path / "keep.h5"
    feats, labels, ids = _arrays()
    write_features(path, feats, labels, ids, ATTRS)

    def boom(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_features(path, feats * 2, labels, ids, ATTRS)
    monkeypatch.undo()
    np.testing.assert_array_equal(read_features(path).features, feats)
    assert not temporary_path(path).exists()


def test_nan_rows_are_refused(tmp_path):
    feats, labels, ids = _arrays()
    feats[1, 2] = np.nan
    feats[2, 0] = np.inf
    with pytest.raises(ExtractionError) as err:
        write_features(tmp_path / "nan.h5", feats, labels, ids, ATTRS)
    msg = str(err.value)
    assert "resnet18" in msg and "wds/cars" in msg and "2 of 3" in msg
    assert not (tmp_path / "nan.h5").exists()


@pytest.mark.parametrize(
    ("features", "n_labels", "match"),
    [(np.zeros((3, 4), np.float64), 3, "float32"), (np.zeros(3, np.float32), 3, "2-D"),
     (np.zeros((3, 4), np.float32), 2, "same length")],
)
def test_invalid_arrays_are_refused(tmp_path, features, n_labels, match):
    ids = np.array(["a", "b", "c"])
    with pytest.raises(ExtractionError, match=match):
        write_features(tmp_path / "bad.h5", features, np.arange(n_labels), ids, ATTRS)
