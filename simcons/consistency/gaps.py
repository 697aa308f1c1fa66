"""Does similarity predict performance gaps? Per dataset, the correlation (Pearson and Spearman)
of each model pair's similarity with |acc_a - acc_b|, the probes' accuracies averaged over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlalchemy import bindparam, text

from simcons.consistency.correlation import correlation_ctes
from simcons.storage import ResultStore, StoreError

ACCURACIES = ("test_top1", "test_top5", "test_balanced_acc")

_ROWS = """
acc AS (
  SELECT model_id, dataset_id, AVG({accuracy}) AS acc, COUNT(*) AS seeds
  FROM probe_results GROUP BY model_id, dataset_id
),
gap_rows AS (
  SELECT p.dataset_id AS g, p.value AS x, ABS(aa.acc - ab.acc) AS y
  FROM pair_similarities p
  JOIN metrics mt ON mt.id = p.metric_id
  JOIN models ma ON ma.id = p.model_a_id
  JOIN models mb ON mb.id = p.model_b_id
  JOIN acc aa ON aa.model_id = p.model_a_id AND aa.dataset_id = p.dataset_id
  JOIN acc ab ON ab.model_id = p.model_b_id AND ab.dataset_id = p.dataset_id
  WHERE mt.slug = :metric {model_filter}
)"""

_RESULT = """
SELECT d.key AS dataset, d.category AS category, pa.n AS n_pairs, pa.r AS pearson,
  sa.r AS spearman
FROM p_agg pa JOIN s_agg sa ON sa.g = pa.g JOIN datasets d ON d.id = pa.g
WHERE pa.n > 2
ORDER BY d.category, d.key
"""


def gap_correlations(
    store: ResultStore, metric: str, *, accuracy: str = "test_top1",
    models: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per dataset: category, number of pairs, Pearson and Spearman r."""
    if accuracy not in ACCURACIES:
        raise StoreError(f"unknown accuracy {accuracy!r}; use one of {', '.join(ACCURACIES)}")
    model_filter = "AND ma.key IN :models AND mb.key IN :models" if models else ""
    body = "WITH " + _ROWS.format(accuracy=accuracy, model_filter=model_filter)
    body += correlation_ctes("gap_rows", ["g"], "pearson", prefix="p_")
    body += correlation_ctes("gap_rows", ["g"], "spearman", prefix="s_") + _RESULT
    sql = text(body)
    params: dict = {"metric": metric}
    if models:
        sql = sql.bindparams(bindparam("models", expanding=True))
        params["models"] = list(models)
    columns, rows = store.query(sql, params)
    table = pd.DataFrame(rows, columns=columns or
                         ["dataset", "category", "n_pairs", "pearson", "spearman"])
    return table.astype({"pearson": float, "spearman": float})


def by_category(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset category: how many datasets, and the mean and median of their correlations."""
    grouped = table.groupby("category")[["pearson", "spearman"]]
    out = grouped.agg(["mean", "median"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out.insert(0, "datasets", table.groupby("category").size())
    return out.reset_index()
