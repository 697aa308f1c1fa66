"""ORM tables of the results store (SQLAlchemy 2). Alembic revisions in migrations/ create them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

KEY = 255  # length of keys, slugs and names


class Base(DeclarativeBase):
    """Declarative base of every simcons table."""


class ModelRow(Base):
    """A model: how to load it and where its features are read."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY), unique=True)
    loader: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(KEY))
    module_name: Mapped[str] = mapped_column(String(KEY))
    token_rule: Mapped[str] = mapped_column(String(16))
    loader_params: Mapped[str] = mapped_column(Text, default="{}")
    embedding_dim: Mapped[int | None] = mapped_column(Integer)
    n_params: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )
    attributes: Mapped[list[ModelAttributeRow]] = relationship(
        back_populates="model", cascade="all, delete-orphan"
    )


class ModelAttributeRow(Base):
    """One attribute of a model (objective, architecture, ...): open to new names."""

    __tablename__ = "model_attributes"
    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    value: Mapped[str] = mapped_column(String(KEY))
    model: Mapped[ModelRow] = relationship(back_populates="attributes")
    __table_args__ = (Index("ix_model_attributes_name_value", "name", "value"),)


class DatasetRow(Base):
    """A dataset and its category."""

    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY), unique=True)
    name: Mapped[str] = mapped_column(String(KEY))
    category: Mapped[str] = mapped_column(String(KEY))
    source: Mapped[str] = mapped_column(String(32))
    params: Mapped[str] = mapped_column(Text, default="{}")
    benchmark: Mapped[str | None] = mapped_column(String(KEY))
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )


class SubsetRow(Base):
    """A sample subset of one dataset split: the rule that drew it and its fingerprint."""

    __tablename__ = "subsets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    max_samples: Mapped[int | None] = mapped_column(Integer)
    per_class: Mapped[int | None] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    n_samples: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    __table_args__ = (UniqueConstraint("dataset_id", "split", "fingerprint", name="uq_subsets"),)


class SubsetMemberRow(Base):
    """One stored index of a subset, in the order the features are stored."""

    __tablename__ = "subset_members"
    subset_id: Mapped[int] = mapped_column(
        ForeignKey("subsets.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_index: Mapped[int] = mapped_column(Integer)


class ExtractionRow(Base):
    """One feature extraction: model x dataset x split x subset x layer, and its HDF5 file."""

    __tablename__ = "extraction_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(64))
    subset_id: Mapped[int] = mapped_column(ForeignKey("subsets.id", ondelete="CASCADE"))
    layer: Mapped[str] = mapped_column(String(KEY))
    token_rule: Mapped[str] = mapped_column(String(16))
    model_fingerprint: Mapped[str] = mapped_column(String(64), server_default="")
    preprocessing: Mapped[str] = mapped_column(Text, default="{}")
    weights_source: Mapped[str | None] = mapped_column(Text)
    weights_sha256: Mapped[str | None] = mapped_column(String(64))
    package_versions: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    path: Mapped[str | None] = mapped_column(Text)
    n_samples: Mapped[int | None] = mapped_column(Integer)
    dim: Mapped[int | None] = mapped_column(Integer)
    dtype: Mapped[str | None] = mapped_column(String(16))
    __table_args__ = (
        UniqueConstraint(
            "model_id", "dataset_id", "split", "subset_id", "layer", "token_rule",
            "model_fingerprint", name="uq_extraction_runs",
        ),
        CheckConstraint("status IN ('running', 'done', 'failed')", name="ck_extraction_status"),
        Index("ix_extraction_runs_status", "status"),
    )


class MetricRow(Base):
    """A similarity metric: its official slug and parameters."""

    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(KEY), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[str] = mapped_column(Text, default="{}")


class PairSimilarityRow(Base):
    """The similarity of one unordered model pair (stored once, a < b) on one dataset."""

    __tablename__ = "pair_similarities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    metric_id: Mapped[int] = mapped_column(ForeignKey("metrics.id", ondelete="CASCADE"))
    model_a_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    model_b_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    value: Mapped[float] = mapped_column(Float(precision=53))
    n_samples: Mapped[int | None] = mapped_column(Integer)
    subset_id: Mapped[int | None] = mapped_column(ForeignKey("subsets.id", ondelete="SET NULL"))
    extraction_a_id: Mapped[int | None] = mapped_column(
        ForeignKey("extraction_runs.id", ondelete="SET NULL")
    )
    extraction_b_id: Mapped[int | None] = mapped_column(
        ForeignKey("extraction_runs.id", ondelete="SET NULL")
    )
    source: Mapped[str] = mapped_column(Text, default="computed")
    software_version: Mapped[str | None] = mapped_column(String(64))
    computed_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    __table_args__ = (
        UniqueConstraint("dataset_id", "metric_id", "model_a_id", "model_b_id", name="uq_pairs"),
        CheckConstraint("model_a_id < model_b_id", name="ck_pairs_ordered"),
        Index("ix_pairs_metric_models", "metric_id", "model_a_id", "model_b_id"),
        Index("ix_pairs_dataset_metric", "dataset_id", "metric_id"),
    )


class ProbeResultRow(Base):
    """A linear probe of one model on one dataset for one seed."""

    __tablename__ = "probe_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    seed: Mapped[int] = mapped_column(Integer)
    learning_rate: Mapped[float] = mapped_column(Float(precision=53))
    weight_decay: Mapped[float] = mapped_column(Float(precision=53))
    val_top1: Mapped[float] = mapped_column(Float(precision=53))
    test_top1: Mapped[float] = mapped_column(Float(precision=53))
    test_top5: Mapped[float | None] = mapped_column(Float(precision=53))
    test_balanced_acc: Mapped[float | None] = mapped_column(Float(precision=53))
    n_classes: Mapped[int] = mapped_column(Integer)
    n_train: Mapped[int] = mapped_column(Integer)
    n_test: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float | None] = mapped_column(Float(precision=53))
    config: Mapped[str] = mapped_column(Text, default="{}")
    train_extraction_id: Mapped[int | None] = mapped_column(
        ForeignKey("extraction_runs.id", ondelete="SET NULL")
    )
    test_extraction_id: Mapped[int | None] = mapped_column(
        ForeignKey("extraction_runs.id", ondelete="SET NULL")
    )
    computed_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    __table_args__ = (UniqueConstraint("model_id", "dataset_id", "seed", name="uq_probe_results"),)


class JobRow(Base):
    """One unit of queued work (extract, similarity block, probe), claimed by a worker's lease."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(512), unique=True)
    payload: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(KEY))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name="ck_jobs_status"
        ),
        Index("ix_jobs_status_priority", "status", "priority", "id"),
    )


class JobDependencyRow(Base):
    """Job `job_id` may start only when job `depends_on_id` is done."""

    __tablename__ = "job_dependencies"
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    depends_on_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    __table_args__ = (Index("ix_job_dependencies_depends_on", "depends_on_id"),)
