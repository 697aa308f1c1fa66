"""HDF5 feature files: written atomically (temporary name, then rename), validated on read.

Layout: datasets ``features`` (float32, n x d), ``labels`` (int64, n) and ``sample_ids``
(UTF-8 strings, n); the attribute ``simcons_attrs`` holds the caller's attrs as JSON and
``simcons_format`` the layout version.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from simcons.extract.errors import ExtractionError, FeatureFileError

FORMAT_VERSION = 1
TMP_SUFFIX = ".tmp"
_DATASETS = ("features", "labels", "sample_ids")


@dataclass
class FeatureFile:
    """The contents of one feature file."""

    features: np.ndarray
    labels: np.ndarray
    sample_ids: np.ndarray
    attrs: dict[str, Any]


def temporary_path(path: Path) -> Path:
    """The name a feature file has while it is being written (same folder)."""
    path = Path(path)
    return path.with_name(path.name + TMP_SUFFIX)


def _what(attrs: dict[str, Any]) -> str:
    return f"model {attrs.get('model', '?')!r} on dataset {attrs.get('dataset', '?')!r}"


def _validate(
    features: np.ndarray, labels: np.ndarray, sample_ids: np.ndarray, attrs: dict
) -> None:
    """Refuse features that are not finite float32 (n, d) with n labels and n sample ids."""
    if not isinstance(features, np.ndarray) or features.dtype != np.float32:
        dtype = getattr(features, "dtype", type(features).__name__)
        raise ExtractionError(f"{_what(attrs)}: features must be a float32 array, got {dtype}")
    if features.ndim != 2:
        raise ExtractionError(
            f"{_what(attrs)}: features must be 2-D (samples, dim), got shape {features.shape}"
        )
    bad = int((~np.isfinite(features)).any(axis=1).sum())
    if bad:
        raise ExtractionError(
            f"{_what(attrs)}: {bad} of {len(features)} feature rows contain NaN or inf; "
            "check the model's weights and inputs, then re-run extraction"
        )
    if labels.ndim != 1 or sample_ids.ndim != 1:
        raise ExtractionError(f"{_what(attrs)}: labels and sample_ids must be 1-D arrays")
    if not (len(features) == len(labels) == len(sample_ids)):
        raise ExtractionError(
            f"{_what(attrs)}: {len(features)} feature rows, {len(labels)} labels and "
            f"{len(sample_ids)} sample ids; they must have the same length"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ExtractionError(f"{_what(attrs)}: labels must be integers, got {labels.dtype}")


def write_features(
    path: str | Path,
    features: np.ndarray,
    labels: np.ndarray,
    sample_ids: np.ndarray,
    attrs: dict[str, Any],
) -> None:
    """Validate and write a feature file; readers never see a partly written file."""
    path = Path(path)
    labels, sample_ids = np.asarray(labels), np.asarray(sample_ids, dtype=str)
    _validate(features, labels, sample_ids, attrs)
    try:
        attrs_json = json.dumps(attrs, sort_keys=True)
    except TypeError as exc:
        raise ExtractionError(f"{_what(attrs)}: attrs must be JSON-serialisable ({exc})") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with h5py.File(tmp, "w") as fh:
            fh.create_dataset("features", data=features)
            fh.create_dataset("labels", data=labels.astype(np.int64))
            fh.create_dataset(
                "sample_ids", data=sample_ids.astype(object), dtype=h5py.string_dtype()
            )
            fh.attrs["simcons_attrs"] = attrs_json
            fh.attrs["simcons_format"] = FORMAT_VERSION
            fh.flush()
        with tmp.open("rb") as raw:
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _broken(path: Path, why: str) -> FeatureFileError:
    return FeatureFileError(
        f"feature file {path} {why}; delete it and re-run extraction (`simcons extract ...`)"
    )


def read_features(path: str | Path) -> FeatureFile:
    """Read a feature file, refusing leftovers of interrupted writes and corrupt files."""
    path = Path(path)
    if path.name.endswith(TMP_SUFFIX):
        raise _broken(path, "is a leftover of an interrupted write, not a result")
    if not path.is_file():
        tmp = temporary_path(path)
        if tmp.exists():
            raise _broken(tmp, f"is a leftover of an interrupted write and {path.name} is missing")
        raise FeatureFileError(
            f"feature file {path} does not exist; run extraction (`simcons extract ...`)"
        )
    try:
        with h5py.File(path, "r") as fh:
            missing = [name for name in _DATASETS if name not in fh]
            if missing or "simcons_attrs" not in fh.attrs:
                raise _broken(path, f"lacks {', '.join(missing) or 'its attributes'}")
            features = fh["features"][()]
            labels = fh["labels"][()]
            sample_ids = np.asarray(fh["sample_ids"].asstr()[()], dtype=str)
            attrs = json.loads(fh.attrs["simcons_attrs"])
    except FeatureFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise _broken(path, f"cannot be read ({exc})") from exc
    if features.dtype != np.float32 or features.ndim != 2 or not (
        len(features) == len(labels) == len(sample_ids)
    ):
        raise _broken(path, "has inconsistent datasets")
    return FeatureFile(features=features, labels=labels, sample_ids=sample_ids, attrs=attrs)
