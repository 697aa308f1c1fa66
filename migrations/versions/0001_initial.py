"""Initial schema: models, attributes, datasets, subsets, extractions, metrics, pairs, probes.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from simcons.storage.views import VIEWS

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

F64 = sa.Float(precision=53)


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(255), nullable=False, unique=True),
        sa.Column("loader", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("module_name", sa.String(255), nullable=False),
        sa.Column("token_rule", sa.String(16), nullable=False),
        sa.Column("loader_params", sa.Text(), nullable=False),
        sa.Column("embedding_dim", sa.Integer()),
        sa.Column("n_params", sa.Integer()),
        *_stamps(),
    )
    op.create_table(
        "model_attributes",
        sa.Column(
            "model_id",
            sa.Integer(),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
    )
    op.create_index("ix_model_attributes_name_value", "model_attributes", ["name", "value"])
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(255), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("category", sa.String(255), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("benchmark", sa.String(255)),
        *_stamps(),
    )
    op.create_table(
        "subsets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "dataset_id",
            sa.Integer(),
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("split", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("max_samples", sa.Integer()),
        sa.Column("per_class", sa.Integer()),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("dataset_id", "split", "fingerprint", name="uq_subsets"),
    )
    op.create_table(
        "subset_members",
        sa.Column(
            "subset_id",
            sa.Integer(),
            sa.ForeignKey("subsets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("sample_index", sa.Integer(), nullable=False),
    )
    op.create_table(
        "extraction_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "model_id", sa.Integer(), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "dataset_id",
            sa.Integer(),
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("split", sa.String(64), nullable=False),
        sa.Column(
            "subset_id",
            sa.Integer(),
            sa.ForeignKey("subsets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("layer", sa.String(255), nullable=False),
        sa.Column("token_rule", sa.String(16), nullable=False),
        sa.Column("preprocessing", sa.Text(), nullable=False),
        sa.Column("weights_source", sa.Text()),
        sa.Column("weights_sha256", sa.String(64)),
        sa.Column("package_versions", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("started_at", sa.DateTime()),
        sa.Column("finished_at", sa.DateTime()),
        sa.Column("path", sa.Text()),
        sa.Column("n_samples", sa.Integer()),
        sa.Column("dim", sa.Integer()),
        sa.Column("dtype", sa.String(16)),
        sa.UniqueConstraint(
            "model_id",
            "dataset_id",
            "split",
            "subset_id",
            "layer",
            "token_rule",
            name="uq_extraction_runs",
        ),
        sa.CheckConstraint("status IN ('running', 'done', 'failed')", name="ck_extraction_status"),
    )
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("slug", sa.String(255), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
    )
    op.create_table(
        "pair_similarities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "dataset_id",
            sa.Integer(),
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "metric_id",
            sa.Integer(),
            sa.ForeignKey("metrics.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "model_a_id",
            sa.Integer(),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "model_b_id",
            sa.Integer(),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("value", F64, nullable=False),
        sa.Column("n_samples", sa.Integer()),
        sa.Column("subset_id", sa.Integer(), sa.ForeignKey("subsets.id", ondelete="SET NULL")),
        sa.Column(
            "extraction_a_id",
            sa.Integer(),
            sa.ForeignKey("extraction_runs.id", ondelete="SET NULL"),
        ),
        sa.Column(
            "extraction_b_id",
            sa.Integer(),
            sa.ForeignKey("extraction_runs.id", ondelete="SET NULL"),
        ),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("software_version", sa.String(64)),
        sa.Column("computed_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("dataset_id", "metric_id", "model_a_id", "model_b_id", name="uq_pairs"),
        sa.CheckConstraint("model_a_id < model_b_id", name="ck_pairs_ordered"),
    )
    op.create_index(
        "ix_pairs_metric_models", "pair_similarities", ["metric_id", "model_a_id", "model_b_id"]
    )
    op.create_table(
        "probe_results",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "model_id", sa.Integer(), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "dataset_id",
            sa.Integer(),
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("learning_rate", F64, nullable=False),
        sa.Column("weight_decay", F64, nullable=False),
        sa.Column("val_top1", F64, nullable=False),
        sa.Column("test_top1", F64, nullable=False),
        sa.Column("test_top5", F64),
        sa.Column("test_balanced_acc", F64),
        sa.Column("n_classes", sa.Integer(), nullable=False),
        sa.Column("n_train", sa.Integer(), nullable=False),
        sa.Column("n_test", sa.Integer(), nullable=False),
        sa.Column("seconds", F64),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column(
            "train_extraction_id",
            sa.Integer(),
            sa.ForeignKey("extraction_runs.id", ondelete="SET NULL"),
        ),
        sa.Column(
            "test_extraction_id",
            sa.Integer(),
            sa.ForeignKey("extraction_runs.id", ondelete="SET NULL"),
        ),
        sa.Column("computed_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("model_id", "dataset_id", "seed", name="uq_probe_results"),
    )
    for ddl in VIEWS.values():
        op.execute(ddl)


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for table in (
        "probe_results",
        "pair_similarities",
        "metrics",
        "extraction_runs",
        "subset_members",
        "subsets",
        "datasets",
        "model_attributes",
        "models",
    ):
        op.drop_table(table)
