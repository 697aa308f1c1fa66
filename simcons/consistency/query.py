"""Similarity consistency R(Theta, Phi) as SQL over stored pairs (SQLite and PostgreSQL alike).

For two datasets, rho is the correlation of the similarities of the model pairs selected by the
two sets, aligned by model pair in a join (never by row order), computed from centred aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, text

from simcons.consistency.correlation import METHODS, correlation_ctes
from simcons.consistency.sets import ModelSet, set_pairs
from simcons.storage import ResultStore, StoreError

_SELECT = """
sel AS (
  SELECT p.dataset_id, p.model_a_id, p.model_b_id, p.value
  FROM pair_similarities p
  JOIN metrics mt ON mt.id = p.metric_id
  JOIN datasets d ON d.id = p.dataset_id
  JOIN models ma ON ma.id = p.model_a_id
  JOIN models mb ON mb.id = p.model_b_id
  WHERE mt.slug = :metric {dataset_filter}
    AND ((ma.key IN :theta AND mb.key IN :phi) OR (ma.key IN :phi AND mb.key IN :theta))
),
joined AS (
  SELECT s1.dataset_id AS d1, s2.dataset_id AS d2, s1.value AS x, s2.value AS y
  FROM sel s1
  JOIN sel s2 ON s2.model_a_id = s1.model_a_id AND s2.model_b_id = s1.model_b_id
   AND s1.dataset_id < s2.dataset_id
)"""

_RESULT = """
SELECT da.key AS dataset_a, db.key AS dataset_b, agg.n AS n_pairs, agg.r AS rho
FROM agg JOIN datasets da ON da.id = agg.d1 JOIN datasets db ON db.id = agg.d2
WHERE agg.n > 2
ORDER BY da.key, db.key
"""


@dataclass(frozen=True)
class Consistency:
    """R(Theta, Phi): one rho per dataset pair."""

    theta: ModelSet
    phi: ModelSet
    metric: str
    method: str
    table: pd.DataFrame  # columns: dataset_a, dataset_b, n_pairs, rho

    def summary(self) -> dict[str, float | int | str]:
        """Median, mean, std (n-1), quartiles and counts of rho over dataset pairs."""
        rho = self.table["rho"].dropna().to_numpy(dtype=float)
        stats = _describe(rho)
        return {
            "theta": self.theta.label,
            "phi": self.phi.label,
            "metric": self.metric,
            "method": self.method,
            "dataset_pairs": int(rho.size),
            "model_pairs": int(self.table["n_pairs"].max()) if len(self.table) else 0,
            **stats,
        }


def consistency(
    store: ResultStore,
    theta: ModelSet,
    phi: ModelSet,
    metric: str,
    *,
    datasets: Sequence[str] | None = None,
    method: str = "pearson",
) -> Consistency:
    """Compute R(Theta, Phi) in SQL: rho of every pair of datasets that both hold the pairs."""
    if method not in METHODS:
        raise StoreError(f"unknown correlation {method!r}; use one of {', '.join(METHODS)}")
    if metric not in store.metric_slugs():
        raise StoreError(
            f"no pairs stored for metric {metric!r}; "
            f"stored: {', '.join(store.metric_slugs()) or 'none'}"
        )
    sql, params = _statement(theta, phi, metric, datasets, method)
    columns, rows = store.query(sql, params)
    table = pd.DataFrame(rows, columns=columns or ["dataset_a", "dataset_b", "n_pairs", "rho"])
    table["rho"] = table["rho"].astype(float)
    return Consistency(theta=theta, phi=phi, metric=metric, method=method, table=table)


def consistency_by(
    store: ResultStore,
    sets: list[ModelSet],
    metric: str,
    *,
    datasets: Sequence[str] | None = None,
    method: str = "pearson",
) -> list[Consistency]:
    """R for every unordered pair of the given sets (each with itself too); tiny sets skipped."""
    results = []
    for theta, phi in set_pairs(sets):
        if _n_model_pairs(theta, phi) <= 2:
            continue
        results.append(consistency(store, theta, phi, metric, datasets=datasets, method=method))
    return results


def _statement(
    theta: ModelSet, phi: ModelSet, metric: str, datasets: Sequence[str] | None, method: str
):  # noqa: ANN202 - (TextClause, params)
    dataset_filter = "AND d.key IN :datasets" if datasets else ""
    body = "WITH " + _SELECT.format(dataset_filter=dataset_filter)
    body += correlation_ctes("joined", ["d1", "d2"], method) + _RESULT
    names = ["theta", "phi"] + (["datasets"] if datasets else [])
    sql = text(body).bindparams(*(bindparam(n, expanding=True) for n in names))
    params: dict = {"metric": metric, "theta": list(theta.models), "phi": list(phi.models)}
    if datasets:
        params["datasets"] = list(datasets)
    return sql, params


def _n_model_pairs(theta: ModelSet, phi: ModelSet) -> int:
    """Unique unordered pairs {a, b}, a != b, a in Theta, b in Phi."""
    return len({frozenset((a, b)) for a in theta.models for b in phi.models if a != b})


def _describe(rho: np.ndarray) -> dict[str, float]:
    if rho.size == 0:
        return {k: float("nan") for k in ("median", "mean", "std", "q25", "q75", "min", "max")}
    return {
        "median": float(np.median(rho)),
        "mean": float(rho.mean()),
        "std": float(rho.std(ddof=1)) if rho.size > 1 else float("nan"),
        "q25": float(np.quantile(rho, 0.25)),
        "q75": float(np.quantile(rho, 0.75)),
        "min": float(rho.min()),
        "max": float(rho.max()),
    }
