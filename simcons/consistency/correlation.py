"""Pearson and Spearman correlations as SQL over grouped (x, y) rows, for SQLite and PostgreSQL.

Pearson comes from centred aggregates (two passes, so values near each other lose no digits);
Spearman is Pearson on average ranks computed with window functions (ties as in scipy).
"""

from __future__ import annotations

METHODS = ("pearson", "spearman")


def ranked(source: str, groups: str) -> str:
    """A CTE body replacing x and y of `source` by their average ranks within each group."""
    return f"""
  SELECT {groups},
    RANK() OVER (PARTITION BY {groups} ORDER BY x)
      + (COUNT(*) OVER (PARTITION BY {groups}, x) - 1) / 2.0 AS x,
    RANK() OVER (PARTITION BY {groups} ORDER BY y)
      + (COUNT(*) OVER (PARTITION BY {groups}, y) - 1) / 2.0 AS y
  FROM {source}"""


def correlation_ctes(source: str, groups: list[str], method: str, *, prefix: str = "") -> str:
    """CTEs ending in `{prefix}agg(groups..., n, r)`: the correlation of x and y per group.

    `source` names a CTE with the group columns and x, y. r is NULL where x or y is constant.
    """
    if method not in METHODS:
        raise ValueError(f"unknown correlation {method!r}; use one of {', '.join(METHODS)}")
    g = ", ".join(groups)
    on = " AND ".join(f"m.{c} = j.{c}" for c in groups)
    jg = ", ".join(f"j.{c}" for c in groups)
    body = ""
    if method == "spearman":
        body += f",\n{prefix}ranked AS ({ranked(source, g)}\n)"
        source = f"{prefix}ranked"
    body += f""",
{prefix}means AS (
  SELECT {g}, COUNT(*) AS n, AVG(x) AS mx, AVG(y) AS my FROM {source} GROUP BY {g}
),
{prefix}sums AS (
  SELECT {jg}, m.n,
    SUM((j.x - m.mx) * (j.y - m.my)) AS sxy,
    SUM((j.x - m.mx) * (j.x - m.mx)) AS sxx,
    SUM((j.y - m.my) * (j.y - m.my)) AS syy
  FROM {source} j JOIN {prefix}means m ON {on}
  GROUP BY {jg}, m.n
),
{prefix}agg AS (
  SELECT {g}, n,
    CASE WHEN sxx > 0 AND syy > 0 THEN sxy / sqrt(sxx * syy) END AS r
  FROM {prefix}sums
)"""
    return body
