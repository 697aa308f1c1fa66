"""CKA against golden values and a naive numpy float64 reference written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simcons.metrics import Metric, MetricError, all_pairs, cka, similarity
from simcons.metrics.cka import u_centre_
from simcons.metrics.engine import plan_blocks

# ---------------------------------------------------------------- naive reference (numpy float64)


def naive_gram(X: np.ndarray, kernel: str, sigma: float | None, mode: str) -> np.ndarray:
    """Explicit n x n Gram; RBF distances from explicit differences."""
    X = np.asarray(X, dtype=np.float64)
    if kernel == "linear":
        return X @ X.T
    sq = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    if mode == "median":
        sigma = sigma * np.sqrt(np.median(sq))
    return np.exp(-sq / (2 * sigma**2))


def naive_centre(K: np.ndarray, unbiased: bool) -> np.ndarray:
    """U-centring (zeroed diagonal, Szekely-Rizzo) or plain H K H."""
    n = K.shape[0]
    if not unbiased:
        H = np.eye(n) - np.ones((n, n)) / n
        return H @ K @ H
    K0 = K - np.diag(np.diag(K))
    row, col, total = K0.sum(1), K0.sum(0), K0.sum()
    Ku = K0 - row[:, None] / (n - 2) - col[None, :] / (n - 2) + total / ((n - 1) * (n - 2))
    np.fill_diagonal(Ku, 0.0)
    return Ku


def centred_cka(K: np.ndarray, L: np.ndarray) -> float:
    """<K, L> / sqrt(<K, K> <L, L>) of two already centred Grams."""
    return float((K * L).sum() / np.sqrt((K * K).sum() * (L * L).sum()))


def naive_cka(X, Y, kernel="linear", unbiased=True, sigma=None, mode="absolute") -> float:
    """CKA from explicit centred Grams, per pair."""
    K = naive_centre(naive_gram(X, kernel, sigma, mode), unbiased)
    L = naive_centre(naive_gram(Y, kernel, sigma, mode), unbiased)
    return centred_cka(K, L)


def loop_u_centre(K: np.ndarray) -> np.ndarray:
    """Szekely-Rizzo U-centring of K with zeroed diagonal, by explicit loops."""
    n = K.shape[0]
    K0 = [[0.0 if i == j else float(K[i, j]) for j in range(n)] for i in range(n)]
    total = sum(sum(row) for row in K0)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            row_i = sum(K0[i][m] for m in range(n))
            col_j = sum(K0[m][j] for m in range(n))
            out[i, j] = K0[i][j] - row_i / (n - 2) - col_j / (n - 2) + total / ((n - 1) * (n - 2))
    return out


def loop_song_hsic(K: np.ndarray, L: np.ndarray) -> float:
    """Unbiased HSIC of Song et al. (2012), term by term with loops over K0, L0."""
    n = K.shape[0]
    K0 = K - np.diag(np.diag(K))
    L0 = L - np.diag(np.diag(L))
    trace = sum(K0[i, j] * L0[j, i] for i in range(n) for j in range(n))
    k_sum = sum(K0[i, j] for i in range(n) for j in range(n))
    l_sum = sum(L0[i, j] for i in range(n) for j in range(n))
    mixed = sum(K0[i, j] * L0[j, m] for i in range(n) for j in range(n) for m in range(n))
    return (trace + k_sum * l_sum / ((n - 1) * (n - 2)) - 2 / (n - 2) * mixed) / (n * (n - 3))


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def golden() -> tuple[np.ndarray, np.ndarray]:
    """Kornblith et al. demo data (numpy legacy generator)."""
    np.random.seed(1337)
    X = np.random.randn(100, 10)
    Y = np.random.randn(100, 10) + X
    return X, Y


@pytest.fixture(scope="module")
def models() -> dict[str, np.ndarray]:
    """Five related float32 models with different widths and unit-norm rows."""
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((40, 6))
    feats = {}
    for i, p in enumerate([5, 9, 12, 7, 16]):
        X = latent @ rng.standard_normal((6, p)) + (0.3 + 0.4 * i) * rng.standard_normal((40, p))
        feats[f"m{i}"] = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    return feats


# ------------------------------------------------------------------------------------ golden


def test_golden_linear_biased(golden):
    assert cka(*golden, unbiased=False) == pytest.approx(0.5576133, abs=1e-6)


def test_golden_rbf_biased_median(golden):
    value = cka(*golden, kernel="rbf", unbiased=False, sigma=0.5, sigma_mode="median")
    assert value == pytest.approx(0.6548312, abs=1e-6)


def test_golden_linear_unbiased(golden):
    assert cka(*golden) == pytest.approx(0.5134565, abs=1e-6)


# -------------------------------------------------------------------------------- properties


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_self_similarity_is_one(golden, kernel, unbiased):
    X, _ = golden
    sigma = 3.0 if kernel == "rbf" else None
    assert cka(X, X, kernel=kernel, unbiased=unbiased, sigma=sigma) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("unbiased", [True, False])
def test_invariant_to_orthogonal_transform_and_isotropic_scaling(golden, unbiased):
    X, Y = golden
    Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((10, 10)))
    base = cka(X, Y, unbiased=unbiased)
    assert cka(3.7 * X @ Q, Y, unbiased=unbiased) == pytest.approx(base, abs=1e-12)
    assert cka(X, 0.01 * Y @ Q.T, unbiased=unbiased) == pytest.approx(base, abs=1e-12)


def test_rbf_with_median_bandwidth_is_invariant_to_scaling(golden):
    X, Y = golden
    kw = dict(kernel="rbf", sigma=0.5, sigma_mode="median")
    assert cka(5.0 * X, Y, **kw) == pytest.approx(cka(X, Y, **kw), abs=1e-12)


def test_unbiased_and_biased_differ(golden):
    X, Y = golden
    assert abs(cka(X, Y, unbiased=True) - cka(X, Y, unbiased=False)) > 0.01


def test_unbiased_hsic_is_invariant_to_feature_offset():
    """Why the engine may centre features first: HSIC_u of X X^T ignores an offset."""
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((30, 6)), rng.standard_normal((30, 4))
    offset = rng.uniform(-5, 5, size=6)
    K, L, K_off = X @ X.T, Y @ Y.T, (X + offset) @ (X + offset).T
    hsic = (naive_centre(K, True) * naive_centre(L, True)).sum()
    hsic_off = (naive_centre(K_off, True) * naive_centre(L, True)).sum()
    assert hsic_off == pytest.approx(hsic, rel=1e-10)
    assert cka(X + offset, Y) == pytest.approx(naive_cka(X, Y), abs=1e-12)


def test_large_offset_float32_features_keep_precision():
    rng = np.random.default_rng(3)
    X = (1000 + rng.standard_normal((20, 5))).astype(np.float32)
    Y = (1000 + rng.standard_normal((20, 5))).astype(np.float32)
    self_value = cka(X, X)
    assert not np.isnan(self_value)
    assert self_value == pytest.approx(1.0, abs=1e-6)
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    expected = naive_cka(X64 - X64.mean(0), Y64 - Y64.mean(0))
    assert cka(X, Y) == pytest.approx(expected, abs=1e-10)
    rbf = naive_cka(X64 - X64.mean(0), Y64 - Y64.mean(0), "rbf", True, 2.0)
    assert cka(X, Y, kernel="rbf", sigma=2.0) == pytest.approx(rbf, abs=1e-10)


# ------------------------------------------------------------------------------- U-centring


def test_u_centring_matches_szekely_rizzo_loops():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((8, 3)) * rng.uniform(0.2, 3.0, size=(8, 1))
    K = A @ A.T  # diagonal varies from row to row
    got = u_centre_(torch.tensor(K)).numpy()
    np.testing.assert_allclose(got, loop_u_centre(K), atol=1e-12)


def test_unbiased_cka_matches_song_formula_and_catches_diagonal_subtraction():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((9, 3)) * rng.uniform(0.2, 3.0, size=(9, 1))
    Y = X[:, :2] + 0.5 * rng.standard_normal((9, 2))
    K, L = X @ X.T, Y @ Y.T
    song = loop_song_hsic(K, L) / np.sqrt(loop_song_hsic(K, K) * loop_song_hsic(L, L))
    assert centred_cka(loop_u_centre(K), loop_u_centre(L)) == pytest.approx(song, abs=1e-12)
    assert cka(X, Y) == pytest.approx(song, abs=1e-12)
    wrong = [naive_centre(M - np.diag(M)[:, None], True) for M in (K, L)]
    assert abs(centred_cka(*wrong) - song) > 1e-3  # the check above would catch that mistake


# ------------------------------------------------------------------------- all_pairs vs naive

CASES = [
    ("linear", True, None, "absolute"),
    ("linear", False, None, "absolute"),
    ("rbf", True, 0.4, "absolute"),
    ("rbf", False, 0.4, "absolute"),
    ("rbf", True, 0.5, "median"),
]


@pytest.mark.parametrize(("kernel", "unbiased", "sigma", "mode"), CASES)
def test_all_pairs_matches_naive(models, kernel, unbiased, sigma, mode):
    metric = Metric("cka", kernel=kernel, unbiased=unbiased, sigma=sigma, sigma_mode=mode)
    got = all_pairs(models, metric, progress=False)
    names = sorted(models)
    expected_keys = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    assert list(got) == expected_keys
    for a, b in expected_keys:
        ref = naive_cka(models[a], models[b], kernel, unbiased, sigma, mode)
        assert got[(a, b)] == pytest.approx(ref, abs=1e-10), (a, b)


@pytest.mark.parametrize(
    ("kernel", "sigma", "budget_bytes"),
    [
        ("rbf", 0.4, 3 * 8 * 40 * 40),  # room for three 40 x 40 float64 Grams: blocks of one
        ("linear", None, 12_000),  # widest model holds 8 * 40 * (16 + 2) = 5,760 bytes
    ],
)
def test_all_pairs_in_blocks_matches_naive(models, kernel, sigma, budget_bytes):
    metric = Metric("cka", kernel=kernel, sigma=sigma)
    got = all_pairs(models, metric, progress=True, memory_budget_gb=budget_bytes / 2**30)
    assert len(got) == 10
    for (a, b), value in got.items():
        ref = naive_cka(models[a], models[b], kernel, True, sigma)
        assert value == pytest.approx(ref, abs=1e-10)


def test_block_plan_keeps_two_blocks_within_budget():
    sizes = {"a": 4, "b": 3, "c": 2, "d": 5}
    assert plan_blocks(list(sizes), sizes, 14) == [["a", "b", "c", "d"]]
    assert plan_blocks(list(sizes), sizes, 10) == [["a"], ["b", "c"], ["d"]]


def test_budget_too_small_for_one_pair(models):
    with pytest.raises(MetricError, match="memory_budget_gb"):
        all_pairs(models, Metric("cka"), progress=False, memory_budget_gb=1e-9)


def test_given_pairs_keep_their_order(models):
    got = all_pairs(models, Metric("cka"), [("m3", "m0"), ("m1", "m2")], progress=False)
    assert list(got) == [("m3", "m0"), ("m1", "m2")]
    assert got[("m3", "m0")] == pytest.approx(naive_cka(models["m3"], models["m0"]), abs=1e-10)


def test_similarity_dispatch(golden):
    assert similarity(*golden, Metric.from_slug("cka_kernel_linear_biased")) == pytest.approx(
        0.5576133, abs=1e-6
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("kernel", "unbiased", "sigma", "mode"), CASES)
def test_cuda_matches_naive(models, kernel, unbiased, sigma, mode):
    metric = Metric("cka", kernel=kernel, unbiased=unbiased, sigma=sigma, sigma_mode=mode)
    got = all_pairs(models, metric, device="cuda", progress=False)
    for (a, b), value in got.items():
        ref = naive_cka(models[a], models[b], kernel, unbiased, sigma, mode)
        assert value == pytest.approx(ref, abs=1e-10)
