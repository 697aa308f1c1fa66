"""stratified_subset follows the paper's rule: ceil(max / classes) per class, seed 42."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simcons.extract.subsample import stratified_subset, subset_fingerprint


def _imbalanced_labels() -> np.ndarray:
    """12,000 labels in 7 classes of unequal size, one class smaller than its quota."""
    sizes = [5000, 3000, 2000, 1000, 500, 400, 100]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.RandomState(0).permutation(labels)


def _paper_notebook_rule(labels: np.ndarray, total: int, seed: int) -> np.ndarray:
    """The notebook check_wds_sizes_n_get_subsets.ipynb, transcribed (global seed, per class)."""
    np.random.seed(seed)
    indices = {v: np.where(labels == v)[0] for v in sorted(np.unique(labels))}
    per_class = int(np.ceil(total / len(indices)))
    chosen = {
        k: np.random.choice(v, min(len(v), per_class), replace=False) for k, v in indices.items()
    }
    return np.array(sorted(np.hstack(list(chosen.values()))))


def test_matches_the_paper_notebook_draw() -> None:
    labels = _imbalanced_labels()
    expected = _paper_notebook_rule(labels, 10_000, 42)
    np.testing.assert_array_equal(stratified_subset(labels), expected)


def test_quota_per_class_is_ceil_of_max_over_classes_capped_by_class_size() -> None:
    labels = _imbalanced_labels()
    idx = stratified_subset(labels, 10_000)
    quota = math.ceil(10_000 / 7)
    counts = np.bincount(labels[idx], minlength=7)
    expected = np.minimum(np.bincount(labels), quota)
    np.testing.assert_array_equal(counts, expected)
    assert len(idx) == expected.sum()


def test_total_can_exceed_max_by_less_than_the_class_count() -> None:
    labels = np.repeat(np.arange(45), 400)  # 18,000 samples, quota ceil(10000/45) = 223
    idx = stratified_subset(labels)
    assert len(idx) == 45 * 223
    assert 0 <= len(idx) - 10_000 < 45


def test_sorted_unique_int64_and_deterministic_for_the_seed() -> None:
    labels = _imbalanced_labels()
    idx = stratified_subset(labels, 3000)
    assert idx.dtype == np.int64
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, stratified_subset(labels, 3000))
    assert not np.array_equal(idx, stratified_subset(labels, 3000, seed=7))


def test_small_sets_and_no_cap_return_everything() -> None:
    labels = np.array([2, 0, 1, 1, 0])
    np.testing.assert_array_equal(stratified_subset(labels), np.arange(5))
    np.testing.assert_array_equal(stratified_subset(labels, 5), np.arange(5))
    np.testing.assert_array_equal(stratified_subset(_imbalanced_labels(), None), np.arange(12_000))
    assert stratified_subset(np.array([], dtype=np.int64)).size == 0


def test_per_class_mode_takes_that_many_per_class() -> None:
    labels = np.repeat(np.arange(100), 30)
    idx = stratified_subset(labels, per_class=10)
    assert len(idx) == 1000
    assert set(np.bincount(labels[idx])) == {10}
    few = stratified_subset(np.array([0, 0, 0, 1]), per_class=2)
    np.testing.assert_array_equal(np.bincount(np.array([0, 0, 0, 1])[few]), [2, 1])


def test_string_labels_work() -> None:
    labels = np.array(["cat", "dog"] * 10)
    idx = stratified_subset(labels, 4)
    assert sorted(labels[idx].tolist()) == ["cat", "cat", "dog", "dog"]


@pytest.mark.parametrize("kwargs", [{"per_class": 0}, {"max_samples": 0}])
def test_bad_sizes_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        stratified_subset(np.zeros(10, dtype=int), **kwargs)


def test_fingerprint_is_sha256_of_int64_bytes() -> None:
    import hashlib

    idx = np.array([0, 3, 5], dtype=np.int32)
    expected = hashlib.sha256(np.array([0, 3, 5], dtype="<i8").tobytes()).hexdigest()
    assert subset_fingerprint(idx) == expected
    assert subset_fingerprint([0, 3, 5]) == expected
    assert subset_fingerprint(np.array([0, 3, 6])) != expected
