"""The results store: ORM schema, Alembic revisions, engines and the store's public methods."""

from simcons.storage.engine import data_dir, database_url, make_engine
from simcons.storage.migrate import SchemaError, check_schema, current_revision, head_revision
from simcons.storage.records import (
    ExtractionInfo,
    ExtractionRecord,
    PairValue,
    ProbeValue,
    StoreError,
    SubsetRecord,
)
from simcons.storage.store import ResultStore, fingerprint

__all__ = [
    "ExtractionInfo",
    "ExtractionRecord",
    "PairValue",
    "ProbeValue",
    "ResultStore",
    "SchemaError",
    "StoreError",
    "SubsetRecord",
    "check_schema",
    "current_revision",
    "data_dir",
    "database_url",
    "fingerprint",
    "head_revision",
    "make_engine",
]
