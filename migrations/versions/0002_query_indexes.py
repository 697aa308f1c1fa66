"""Indexes for the per-dataset reads of pairs and the status reads of extractions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_pairs_dataset_metric", "pair_similarities", ["dataset_id", "metric_id"])
    op.create_index("ix_extraction_runs_status", "extraction_runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_extraction_runs_status", table_name="extraction_runs")
    op.drop_index("ix_pairs_dataset_metric", table_name="pair_similarities")
