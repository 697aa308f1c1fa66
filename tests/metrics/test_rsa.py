"""RSA against scipy: pdist(X, 'correlation') RDMs compared by spearmanr / pearsonr."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, rankdata, spearmanr

from simcons.metrics import Metric, MetricError, all_pairs, rsa
from simcons.metrics.rsa import average_ranks, rank_correlation


def scipy_rsa(X: np.ndarray, Y: np.ndarray, method: str = "spearman") -> float:
    """Reference: correlation-distance RDMs from scipy, compared by scipy."""
    dx, dy = pdist(np.float64(X), "correlation"), pdist(np.float64(Y), "correlation")
    return float((spearmanr if method == "spearman" else pearsonr)(dx, dy)[0])


def test_rank_correlation_with_ties():
    u = torch.tensor([1.0, 1.0, 2.0, 3.0])
    v = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert rank_correlation(u, v) == pytest.approx(0.948683, abs=1e-6)


def test_average_ranks_match_rankdata():
    values = np.random.default_rng(0).integers(0, 5, size=200).astype(np.float64)
    np.testing.assert_array_equal(average_ranks(torch.tensor(values)).numpy(), rankdata(values))


def test_rsa_matches_scipy():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 8))
    Y = X[:, :5] + rng.standard_normal((30, 5))
    assert rsa(X, Y) == pytest.approx(scipy_rsa(X, Y), abs=1e-10)


def test_rsa_pearson_matches_scipy():
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((25, 6)), rng.standard_normal((25, 9))
    assert rsa(X, Y, corr_method="pearson") == pytest.approx(scipy_rsa(X, Y, "pearson"), abs=1e-9)


def test_rsa_with_tied_distances_matches_scipy():
    rng = np.random.default_rng(3)
    X = rng.integers(0, 2, size=(20, 3)).astype(np.float64)  # few distinct rows: many ties
    X = X[X.std(axis=1) > 0]
    Y = rng.standard_normal((len(X), 4))
    dx = np.round(pdist(X, "correlation"), 10)  # scipy distances on the same 1e-10 grid
    assert len(np.unique(dx)) < len(dx) / 4
    expected = spearmanr(dx, pdist(Y, "correlation"))[0]
    assert rsa(X, Y) == pytest.approx(expected, abs=1e-10)


def test_all_pairs_rsa_matches_scipy():
    rng = np.random.default_rng(4)
    feats = {f"m{i}": rng.standard_normal((24, 4 + i)).astype(np.float32) for i in range(4)}
    metric = Metric.from_slug("rsa_method_correlation_corr_method_spearman")
    for (a, b), value in all_pairs(feats, metric, progress=False).items():
        assert value == pytest.approx(scipy_rsa(feats[a], feats[b]), abs=1e-10)


def test_collinear_samples_give_exact_ties():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((15, 6))
    X[3], X[7], X[9] = 1.7 * X[1], 0.3 * X[1], 3.1 * X[2]
    Y = rng.standard_normal((15, 5))
    dx = pdist(X, "correlation")
    zero = np.abs(dx) < 1e-8
    assert zero.sum() == 4
    # Exact ties: the collinear pairs at 0, and d(1, k) = d(3, k) = d(7, k), d(2, k) = d(9, k).
    dx = np.round(dx, 10)
    dx[zero] = 0.0
    expected = spearmanr(dx, pdist(Y, "correlation"))[0]
    permuted = X[:, ::-1].copy()  # different round-off on the same distances
    assert rsa(X, Y) == pytest.approx(expected, abs=1e-12)
    assert rsa(permuted, Y) == pytest.approx(expected, abs=1e-12)


def test_fully_collinear_rdm_raises():
    rng = np.random.default_rng(6)
    X = rng.uniform(0.5, 2.0, size=(10, 1)) * rng.standard_normal((1, 5))
    with pytest.raises(MetricError, match="'flat'.*constant"):
        all_pairs({"flat": X, "ok": rng.standard_normal((10, 5))}, Metric("rsa"), progress=False)


def test_zero_variance_sample_raises_with_index():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((10, 5))
    X[6] = 0.3
    with pytest.raises(MetricError, match=r"'vit'.*sample 6"):
        all_pairs({"vit": X, "cnn": rng.standard_normal((10, 5))}, Metric("rsa"), progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rsa_matches_scipy():
    rng = np.random.default_rng(8)
    feats = {f"m{i}": rng.standard_normal((24, 6)) for i in range(3)}
    for (a, b), value in all_pairs(feats, Metric("rsa"), device="cuda", progress=False).items():
        assert value == pytest.approx(scipy_rsa(feats[a], feats[b]), abs=1e-10)
