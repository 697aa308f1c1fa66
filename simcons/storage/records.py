"""Plain records the store returns: ORM objects never leave a session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class StoreError(ValueError):
    """A request the store cannot serve (unknown key, inconsistent input); the message says why."""


@dataclass(frozen=True)
class SubsetRecord:
    """A stored sample subset of one dataset split."""

    id: int
    dataset: str
    split: str
    rule: str
    max_samples: int | None
    per_class: int | None
    seed: int
    n_samples: int
    fingerprint: str


@dataclass(frozen=True)
class ExtractionRecord:
    """One extraction run as stored."""

    id: int
    model: str
    dataset: str
    split: str
    subset_id: int
    layer: str
    token_rule: str
    status: str
    path: str | None
    n_samples: int | None
    dim: int | None
    dtype: str | None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class ExtractionInfo:
    """What a finished extraction reports back for the store to record."""

    path: str
    n_samples: int
    dim: int
    dtype: str
    preprocessing: dict[str, Any] = field(default_factory=dict)
    weights_source: str | None = None
    weights_sha256: str | None = None
    package_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PairValue:
    """One model pair's similarity to store; the store orders the pair itself."""

    model_a: str
    model_b: str
    value: float
    n_samples: int | None = None
    extraction_a: int | None = None
    extraction_b: int | None = None


@dataclass(frozen=True)
class ProbeValue:
    """One linear probe (model x dataset x seed) to store."""

    model: str
    dataset: str
    seed: int
    learning_rate: float
    weight_decay: float
    val_top1: float
    test_top1: float
    test_top5: float | None
    test_balanced_acc: float | None
    n_classes: int
    n_train: int
    n_test: int
    seconds: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    train_extraction: int | None = None
    test_extraction: int | None = None
