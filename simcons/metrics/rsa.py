"""RSA: correlation-distance RDMs per model, compared by Spearman (or Pearson) correlation."""

from __future__ import annotations

import torch

from simcons.metrics.spec import MetricError

# Distances are snapped to this absolute grid before ranking, so round-off noise on equal
# distances (e.g. collinear samples at distance ~1e-16) becomes exact ties.
SNAP = 1e-10
# A sample whose centred norm is below this fraction of its norm has zero variance.
_ZERO_VARIANCE = 1e-10


def correlation_rdm(X: torch.Tensor, name: str) -> torch.Tensor:
    """Upper triangle (row-major, as scipy pdist) of 1 - Pearson r between samples, snapped."""
    X = X.to(torch.float64)
    Z = X - X.mean(dim=1, keepdim=True)
    norms = torch.linalg.vector_norm(Z, dim=1)
    flat = norms <= _ZERO_VARIANCE * torch.linalg.vector_norm(X, dim=1)
    if bool(flat.any()):
        bad = torch.nonzero(flat).flatten().tolist()
        raise MetricError(
            f"RSA is undefined for model {name!r}: sample {bad[0]} has zero variance across its "
            f"features ({len(bad)} such sample(s)), so its correlation distance is undefined; "
            "remove or re-extract those samples"
        )
    Z /= norms[:, None]
    D = Z @ Z.T
    D.neg_().add_(1.0)
    n = D.shape[0]
    upper = torch.ones(n, n, dtype=torch.bool, device=D.device).triu_(1)
    return torch.round(D[upper] / SNAP) * SNAP


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks with ties given their average rank (as scipy.stats.rankdata)."""
    ordered, order = torch.sort(values)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    group = torch.cumsum(starts, dim=0) - 1
    counts = torch.bincount(group)
    last = torch.cumsum(counts, dim=0).to(torch.float64)
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = (last - (counts - 1) / 2.0)[group]
    return ranks


def standardise(values: torch.Tensor, name: str) -> torch.Tensor:
    """Centre to mean 0 and scale to unit norm, so a correlation is one dot product."""
    if bool(values.max() == values.min()):
        raise MetricError(
            f"RSA is undefined for model {name!r}: all its correlation distances are equal "
            "(e.g. every sample is a positive multiple of one vector), so the RDM is constant"
        )
    centred = values - values.mean()
    return centred / torch.linalg.vector_norm(centred)


def rdm_vector(rdm: torch.Tensor, corr_method: str, name: str) -> torch.Tensor:
    """Turn an RDM triangle into the standardised (ranked for Spearman) vector compared by dot."""
    values = average_ranks(rdm) if corr_method == "spearman" else rdm
    return standardise(values, name)


def rank_correlation(u: torch.Tensor, v: torch.Tensor, corr_method: str = "spearman") -> float:
    """Spearman (average ranks for ties) or Pearson correlation of two RDM vectors."""
    a = rdm_vector(u.to(torch.float64), corr_method, "u")
    b = rdm_vector(v.to(torch.float64), corr_method, "v")
    return float(torch.dot(a, b))


class CorrelationRSA:
    """RSA with correlation-distance RDMs; each model's standardised vector is built once."""

    def __init__(self, corr_method: str) -> None:
        """corr_method compares two RDMs: 'spearman' or 'pearson'."""
        self.corr_method = corr_method

    @staticmethod
    def nbytes(n: int, p: int) -> int:
        """Bytes one prepared model holds: the float64 upper triangle of its RDM."""
        return 8 * (n * (n - 1) // 2)

    def prepare(self, X: torch.Tensor, name: str) -> torch.Tensor:
        """RDM triangle -> (ranks ->) centred unit vector."""
        return rdm_vector(correlation_rdm(X, name), self.corr_method, name)

    def pair(self, a: torch.Tensor, b: torch.Tensor) -> float:
        """Correlation of two standardised RDM vectors."""
        return float(torch.dot(a, b))
