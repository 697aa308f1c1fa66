"""SQL views joining pairs and probes with both models' attributes (SQLite and PostgreSQL)."""

from __future__ import annotations

from simcons.catalog.specs import CORE_ATTRIBUTES


def _pivot(alias: str) -> str:
    return ",\n  ".join(
        f"MAX(CASE WHEN {alias}.name = '{a}' THEN {alias}.value END) AS {a}"
        for a in CORE_ATTRIBUTES
    )


def _both(prefix_a: str, prefix_b: str) -> str:
    return ",\n  ".join(
        f"{prefix_a}.{a} AS a_{a}, {prefix_b}.{a} AS b_{a}" for a in CORE_ATTRIBUTES
    )


MODEL_CATALOG = f"""
CREATE VIEW model_catalog AS
SELECT m.id AS model_id, m.key AS model, m.loader, m.model_name, m.module_name, m.token_rule,
  m.embedding_dim, m.n_params,
  {_pivot("a")}
FROM models m LEFT JOIN model_attributes a ON a.model_id = m.id
GROUP BY m.id, m.key, m.loader, m.model_name, m.module_name, m.token_rule, m.embedding_dim,
  m.n_params
"""

PAIR_VIEW = f"""
CREATE VIEW pair_view AS
SELECT p.id AS pair_id, d.key AS dataset, d.category AS category, mt.slug AS metric,
  ma.model AS model_a, mb.model AS model_b, p.value AS value, p.n_samples AS n_samples,
  {_both("ma", "mb")}
FROM pair_similarities p
JOIN datasets d ON d.id = p.dataset_id
JOIN metrics mt ON mt.id = p.metric_id
JOIN model_catalog ma ON ma.model_id = p.model_a_id
JOIN model_catalog mb ON mb.model_id = p.model_b_id
"""

PAIR_ATTRIBUTE_VIEW = """
CREATE VIEW pair_attribute_view AS
SELECT p.id AS pair_id, d.key AS dataset, mt.slug AS metric, ma.key AS model_a, mb.key AS model_b,
  aa.name AS attribute, aa.value AS a_value, ab.value AS b_value, p.value AS value
FROM pair_similarities p
JOIN datasets d ON d.id = p.dataset_id
JOIN metrics mt ON mt.id = p.metric_id
JOIN models ma ON ma.id = p.model_a_id
JOIN models mb ON mb.id = p.model_b_id
JOIN model_attributes aa ON aa.model_id = p.model_a_id
JOIN model_attributes ab ON ab.model_id = p.model_b_id AND ab.name = aa.name
"""

PROBE_VIEW = """
CREATE VIEW probe_view AS
SELECT m.key AS model, d.key AS dataset, d.category AS category, COUNT(*) AS n_seeds,
  AVG(r.test_top1) AS test_top1, AVG(r.test_top5) AS test_top5,
  AVG(r.test_balanced_acc) AS test_balanced_acc, AVG(r.val_top1) AS val_top1
FROM probe_results r
JOIN models m ON m.id = r.model_id
JOIN datasets d ON d.id = r.dataset_id
GROUP BY m.key, d.key, d.category
"""

#: Views in creation order (dropped in reverse), as revision 0001 creates them. A later revision
#: that changes a view spells out its new DDL itself, so this revision stays as it was.
VIEWS = {
    "model_catalog": MODEL_CATALOG,
    "pair_view": PAIR_VIEW,
    "pair_attribute_view": PAIR_ATTRIBUTE_VIEW,
    "probe_view": PROBE_VIEW,
}
