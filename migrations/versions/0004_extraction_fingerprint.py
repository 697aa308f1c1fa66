"""Extraction runs remember which catalog entry made them (a model fingerprint).

A model whose loader, name, layer, token rule or parameters change gets new extraction runs
and feature files instead of reusing the old ones. Runs stored before this revision have an
empty fingerprint and are extracted again on their next use.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_OLD = ["model_id", "dataset_id", "split", "subset_id", "layer", "token_rule"]


def upgrade() -> None:
    with op.batch_alter_table("extraction_runs") as batch:
        batch.add_column(
            sa.Column("model_fingerprint", sa.String(64), nullable=False, server_default="")
        )
        batch.drop_constraint("uq_extraction_runs", type_="unique")
        batch.create_unique_constraint("uq_extraction_runs", [*_OLD, "model_fingerprint"])


def downgrade() -> None:
    # Runs that differ only by fingerprint would collide under the old key: keep the newest.
    op.execute(
        "DELETE FROM extraction_runs WHERE id NOT IN (SELECT MAX(id) FROM extraction_runs "
        f"GROUP BY {', '.join(_OLD)})"
    )
    with op.batch_alter_table("extraction_runs") as batch:
        batch.drop_constraint("uq_extraction_runs", type_="unique")
        batch.create_unique_constraint("uq_extraction_runs", _OLD)
        batch.drop_column("model_fingerprint")
