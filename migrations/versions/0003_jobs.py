"""Job queue for resumable workers: jobs with leases, and their dependencies.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(512), nullable=False, unique=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_expires_at", sa.DateTime()),
        sa.Column("heartbeat_at", sa.DateTime()),
        sa.Column("last_error", sa.Text()),
        sa.Column("traceback", sa.Text()),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", sa.DateTime()),
        sa.Column("finished_at", sa.DateTime()),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')",
                           name="ck_jobs_status"),
    )
    op.create_index("ix_jobs_status_priority", "jobs", ["status", "priority", "id"])
    op.create_table(
        "job_dependencies",
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("depends_on_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_index("ix_job_dependencies_depends_on", "job_dependencies", ["depends_on_id"])


def downgrade() -> None:
    op.drop_index("ix_job_dependencies_depends_on", table_name="job_dependencies")
    op.drop_table("job_dependencies")
    op.drop_index("ix_jobs_status_priority", table_name="jobs")
    op.drop_table("jobs")
