"""Class-stratified subsets of a split's samples, drawn as the paper's public code draws them.

The paper's code (GitHub lciernik/similarity_consistency, notebook
`benchmark/notebooks/check_wds_sizes_n_get_subsets.ipynb`) subsamples a train split only when it
holds more than 10,000 samples. It then takes `ceil(10000 / n_classes)` samples from every class
(all of a class that has fewer), with `np.random.choice(indices_of_class, k, replace=False)` per
class in sorted label order after one `np.random.seed(42)`, and stores the sorted indices as
`subset_indices_train.json`. The total can therefore exceed 10,000 by up to `n_classes - 1`
(e.g. 45 classes give 45 x 223 = 10,035) or fall short of it when classes are small.

`stratified_subset` reproduces that rule with a fresh `np.random.RandomState(seed)` per call. The
notebook reseeds once and loops over all datasets (sorted by train size), so its indices equal
these for the first subsampled dataset only; for the others they are the same rule under another
generator state. The paper's ImageNet-1k subset (10 per class) comes from a precomputed JSON file
(`imagenet-10k-{split}.json`) whose generating code is not public; `per_class` applies the same
per-class draw.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

#: The paper's cap on samples per dataset for similarity computation.
PAPER_MAX_SAMPLES = 10_000
#: The paper's seed for the subsample.
PAPER_SEED = 42


def stratified_subset(
    labels: np.ndarray,
    max_samples: int | None = PAPER_MAX_SAMPLES,
    *,
    per_class: int | None = None,
    seed: int = PAPER_SEED,
) -> np.ndarray:
    """Sorted int64 indices: `per_class` per class, else all, else ceil(max/classes) per class."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    if per_class is not None:
        if per_class < 1:
            raise ValueError(f"per_class must be at least 1, got {per_class}")
        quota = per_class
    elif max_samples is None or len(labels) <= max_samples:
        return np.arange(len(labels), dtype=np.int64)
    elif max_samples < 1:
        raise ValueError(f"max_samples must be at least 1 (or None for all), got {max_samples}")
    else:
        quota = math.ceil(max_samples / len(np.unique(labels)))
    return _draw_per_class(labels, quota, seed)


def _draw_per_class(labels: np.ndarray, quota: int, seed: int) -> np.ndarray:
    """Up to `quota` indices of each class, drawn in sorted class order, returned sorted."""
    rng = np.random.RandomState(seed)
    chosen = [
        rng.choice(members, min(len(members), quota), replace=False)
        for members in (np.flatnonzero(labels == value) for value in np.unique(labels))
    ]
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def subset_fingerprint(indices: np.ndarray) -> str:
    """The sha256 hex digest of the indices as little-endian int64 bytes."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype="<i8").tobytes()).hexdigest()
