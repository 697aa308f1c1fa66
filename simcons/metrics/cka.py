"""CKA per-model preparation and per-pair evaluation (linear feature-space form and RBF Grams).

Every preparer takes one model's features as a float64 tensor on the target device and returns
the terms that do not depend on the other model, so all_pairs computes them once per model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from simcons.metrics.spec import MetricError

# Self-HSIC below this fraction of (mean squared row norm)^2 is round-off: constant features.
_LINEAR_DEGENERATE = 1e-12
# Mean squared entry of a centred RBF Gram below this is round-off (kernel entries lie in [0, 1]).
_RBF_DEGENERATE = 1e-20


def centre_columns(X: torch.Tensor) -> torch.Tensor:
    """Subtract each feature's mean (float64) so 1000 + N(0, 1) features lose no precision."""
    X = X.to(torch.float64)
    return X - X.mean(dim=0, keepdim=True)


@dataclass
class LinearState:
    """Per-model terms of the linear kernel K = X X^T, from column-centred features."""

    X: torch.Tensor  # (n, p) centred features
    diag: torch.Tensor  # (n,) diag(K) = squared row norms
    row_sums: torch.Tensor  # (n,) K0 1 with K0 = K with zeroed diagonal
    total: float  # 1' K0 1
    self_hsic: float  # HSIC(K, K) with the chosen estimator


def linear_hsic(a: LinearState, b: LinearState, unbiased: bool) -> float:
    """HSIC of two linear kernels from feature-space terms: one GEMM X^T Y plus vectors."""
    n = a.X.shape[0]
    cross = torch.linalg.matrix_norm(a.X.T @ b.X) ** 2  # ||X^T Y||_F^2 = tr(K L)
    if not unbiased:
        return float(cross) / (n - 1) ** 2
    trace0 = cross - torch.dot(a.diag, b.diag)  # tr(K0 L0)
    ones_term = a.total * b.total / ((n - 1) * (n - 2))
    mixed = 2.0 / (n - 2) * torch.dot(a.row_sums, b.row_sums)  # 2/(n-2) 1' K0 L0 1
    return float(trace0 + ones_term - mixed) / (n * (n - 3))


class LinearCKA:
    """Linear-kernel CKA evaluated in feature space (never forms an n x n Gram)."""

    def __init__(self, unbiased: bool) -> None:
        """Choose the unbiased (Song et al. 2012) or the biased (plain centring) HSIC."""
        self.unbiased = unbiased

    @staticmethod
    def nbytes(n: int, p: int) -> int:
        """Bytes one prepared model holds: centred float64 features plus two n-vectors."""
        return 8 * (n * p + 2 * n)

    def prepare(self, X: torch.Tensor, name: str) -> LinearState:
        """Centre the features and keep row norms, K0 row sums, their total and the self-HSIC."""
        Xc = centre_columns(X)
        diag = (Xc * Xc).sum(dim=1)
        row_sums = Xc @ Xc.sum(dim=0) - diag
        state = LinearState(Xc, diag, row_sums, float(row_sums.sum()), 0.0)
        state.self_hsic = linear_hsic(state, state, self.unbiased)
        scale = float(diag.mean())
        if scale == 0.0 or state.self_hsic <= _LINEAR_DEGENERATE * scale**2:
            raise MetricError(
                f"CKA is undefined for model {name!r}: its features are constant across samples "
                "(zero self-HSIC); check that model's extraction or leave it out"
            )
        return state

    def pair(self, a: LinearState, b: LinearState) -> float:
        """CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
        return linear_hsic(a, b, self.unbiased) / math.sqrt(a.self_hsic * b.self_hsic)


def squared_distances(Xc: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances in float64, clipped at 0, exact 0 on the diagonal."""
    sq = (Xc * Xc).sum(dim=1)
    D = Xc @ Xc.T
    D.mul_(-2.0).add_(sq[:, None]).add_(sq[None, :]).clamp_(min=0.0)
    D.fill_diagonal_(0.0)
    return D


def median(values: torch.Tensor) -> float:
    """Median averaging the two middle values for an even count (as numpy.median)."""
    flat = values.flatten()
    k = flat.numel()
    upper = float(torch.kthvalue(flat, k // 2 + 1).values)
    if k % 2:
        return upper
    return 0.5 * (float(torch.kthvalue(flat, k // 2).values) + upper)


def u_centre_(K: torch.Tensor) -> torch.Tensor:
    """U-centre a Gram in place: zero the diagonal, remove row/col means with (n-2) factors."""
    n = K.shape[0]
    K.fill_diagonal_(0.0)
    means = K.sum(dim=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    K.sub_(means[:, None]).sub_(means[None, :])
    K.fill_diagonal_(0.0)
    return K


def double_centre_(K: torch.Tensor) -> torch.Tensor:
    """Centre a Gram in place as H K H (biased HSIC)."""
    means = K.mean(dim=0)
    means -= means.mean() / 2
    return K.sub_(means[:, None]).sub_(means[None, :])


@dataclass
class RbfState:
    """One model's centred RBF Gram and its Frobenius norm."""

    K: torch.Tensor  # (n, n) U-centred (unbiased) or H K H (biased) Gram
    norm: float  # sqrt(<K~, K~>)


class RbfCKA:
    """RBF-kernel CKA: each model's centred n x n Gram is built once and kept."""

    def __init__(self, unbiased: bool, sigma: float, sigma_mode: str) -> None:
        """sigma: absolute bandwidth, or in median mode a factor on sqrt(median sq. distance)."""
        self.unbiased = unbiased
        self.sigma = sigma
        self.sigma_mode = sigma_mode

    @staticmethod
    def nbytes(n: int, p: int) -> int:
        """Bytes one prepared model holds: an n x n float64 Gram."""
        return 8 * n * n

    def bandwidth(self, D: torch.Tensor) -> float:
        """Absolute sigma, or factor * sqrt(median of all squared distances, diagonal included)."""
        if self.sigma_mode == "absolute":
            return self.sigma
        return self.sigma * math.sqrt(median(D))

    def prepare(self, X: torch.Tensor, name: str) -> RbfState:
        """Build K = exp(-D / (2 sigma^2)), centre it, and check it is not degenerate."""
        D = squared_distances(centre_columns(X))
        sigma = self.bandwidth(D)
        if sigma == 0.0:
            raise MetricError(
                f"CKA is undefined for model {name!r}: its features are constant across samples "
                "(median distance 0, so the median-relative bandwidth is 0)"
            )
        K = D.mul_(-1.0 / (2.0 * sigma**2)).exp_()
        K = u_centre_(K) if self.unbiased else double_centre_(K)
        n = K.shape[0]
        self_dot = float(torch.dot(K.flatten(), K.flatten()))
        if self_dot <= _RBF_DEGENERATE * n * n:
            raise MetricError(
                f"CKA is undefined for model {name!r}: its centred RBF Gram is zero (zero "
                f"self-HSIC): the features are constant across samples, or sigma={sigma:g} makes "
                "the kernel constant or the identity; check the features or choose another sigma"
            )
        return RbfState(K, math.sqrt(self_dot))

    def pair(self, a: RbfState, b: RbfState) -> float:
        """CKA = <K~, L~> / sqrt(<K~, K~> <L~, L~>)."""
        return float(torch.dot(a.K.flatten(), b.K.flatten())) / (a.norm * b.norm)
