"""The results store: one transaction per public method, plain records in and out."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, Table, TextClause, UniqueConstraint, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from simcons import __version__
from simcons.catalog.specs import DatasetSpec, ModelSpec, model_fingerprint
from simcons.storage.engine import make_engine
from simcons.storage.migrate import check_schema
from simcons.storage.records import (
    ExtractionInfo,
    ExtractionRecord,
    PairValue,
    ProbeValue,
    StoreError,
    SubsetRecord,
)
from simcons.storage.schema import (
    DatasetRow,
    ExtractionRow,
    MetricRow,
    ModelAttributeRow,
    ModelRow,
    PairSimilarityRow,
    ProbeResultRow,
    SubsetMemberRow,
    SubsetRow,
)

_CHUNK = 5000


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def fingerprint(indices: Sequence[int]) -> str:
    """sha256 of the indices as little-endian int64: the identity of a subset."""
    data = b"".join(int(i).to_bytes(8, "little", signed=True) for i in indices)
    return hashlib.sha256(data).hexdigest()


class ResultStore:
    """SQL store of models, datasets, extractions, pair similarities and probes."""

    def __init__(self, url: str, *, read_only: bool = False, check: bool = True) -> None:
        self.url = url
        self.engine: Engine = make_engine(url, read_only=read_only)
        if check:
            check_schema(self.engine, make_url(url).render_as_string(hide_password=True))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # ---- catalog -----------------------------------------------------------------------------

    def upsert_models(self, specs: Iterable[ModelSpec]) -> tuple[int, int]:
        """Insert new models and update known ones by key; returns (added, updated)."""
        added = updated = 0
        with self._session() as s:
            for spec in specs:
                row = s.scalar(select(ModelRow).where(ModelRow.key == spec.key))
                if row is None:
                    row = ModelRow(key=spec.key)
                    s.add(row)
                    added += 1
                elif _model_spec(row) != spec:
                    updated += 1
                row.loader, row.model_name = spec.loader, spec.model_name
                row.module_name, row.token_rule = spec.module_name, spec.token_rule
                row.loader_params = json.dumps(spec.loader_params, sort_keys=True)
                row.embedding_dim, row.n_params = spec.embedding_dim, spec.n_params
                current = {a.name: a for a in row.attributes}
                for name in set(current) - set(spec.attributes):
                    row.attributes.remove(current[name])
                for name, value in spec.attributes.items():
                    if name in current:
                        current[name].value = value
                    else:
                        row.attributes.append(ModelAttributeRow(name=name, value=value))
        return added, updated

    def upsert_datasets(self, specs: Iterable[DatasetSpec]) -> tuple[int, int]:
        """Insert new datasets and update known ones by key; returns (added, updated)."""
        added = updated = 0
        with self._session() as s:
            for spec in specs:
                row = s.scalar(select(DatasetRow).where(DatasetRow.key == spec.key))
                if row is None:
                    row = DatasetRow(key=spec.key)
                    s.add(row)
                    added += 1
                elif _dataset_spec(row) != spec:
                    updated += 1
                row.name, row.category, row.source = spec.name, spec.category, spec.source
                row.params = json.dumps(spec.params, sort_keys=True)
                row.benchmark = spec.benchmark
        return added, updated

    def models(self, keys: Iterable[str] | None = None) -> list[ModelSpec]:
        """The stored models (all, or these keys in this order; unknown keys raise)."""
        with self._session() as s:
            rows = s.scalars(
                select(ModelRow).options(selectinload(ModelRow.attributes)).order_by(ModelRow.key)
            ).all()
            specs = {r.key: _model_spec(r) for r in rows}
        return _pick(specs, keys, "model", "simcons ingest models.yaml")

    def datasets(self, keys: Iterable[str] | None = None) -> list[DatasetSpec]:
        """The stored datasets (all, or these keys in this order; unknown keys raise)."""
        with self._session() as s:
            rows = s.scalars(select(DatasetRow).order_by(DatasetRow.key)).all()
            specs = {r.key: _dataset_spec(r) for r in rows}
        return _pick(specs, keys, "dataset", "simcons ingest datasets.yaml")

    def models_where(self, filters: dict[str, str]) -> list[str]:
        """Keys of the models whose attributes equal every `name=value` in filters."""
        with self._session() as s:
            query = select(ModelRow.key)
            for i, (name, value) in enumerate(filters.items()):
                a = ModelAttributeRow.__table__.alias(f"a{i}")
                query = query.join(a, a.c.model_id == ModelRow.id).where(
                    a.c.name == name, a.c.value == value
                )
            return list(s.scalars(query.order_by(ModelRow.key)))

    def attribute_values(self, name: str) -> list[str]:
        """The distinct values of one model attribute, sorted."""
        with self._session() as s:
            return list(
                s.scalars(
                    select(ModelAttributeRow.value)
                    .where(ModelAttributeRow.name == name)
                    .distinct()
                    .order_by(ModelAttributeRow.value)
                )
            )

    def attribute_names(self) -> list[str]:
        """The attribute names any model has, sorted."""
        with self._session() as s:
            return list(
                s.scalars(
                    select(ModelAttributeRow.name).distinct().order_by(ModelAttributeRow.name)
                )
            )

    # ---- subsets and extractions --------------------------------------------------------------

    def ensure_subset(
        self,
        dataset: str,
        split: str,
        indices: Sequence[int],
        *,
        rule: str,
        max_samples: int | None,
        per_class: int | None,
        seed: int,
    ) -> SubsetRecord:
        """Store a subset's indices once (identified by their fingerprint) and return it."""
        fp = fingerprint(indices)
        with self._session() as s:
            ds = _dataset_row(s, dataset)
            row = s.scalar(
                select(SubsetRow).where(
                    SubsetRow.dataset_id == ds.id,
                    SubsetRow.split == split,
                    SubsetRow.fingerprint == fp,
                )
            )
            if row is None:
                row = SubsetRow(
                    dataset_id=ds.id,
                    split=split,
                    rule=rule,
                    max_samples=max_samples,
                    per_class=per_class,
                    seed=seed,
                    n_samples=len(indices),
                    fingerprint=fp,
                )
                s.add(row)
                s.flush()
                members = [
                    {"subset_id": row.id, "position": p, "sample_index": int(i)}
                    for p, i in enumerate(indices)
                ]
                for start in range(0, len(members), _CHUNK):
                    s.execute(SubsetMemberRow.__table__.insert(), members[start : start + _CHUNK])
            return _subset_record(row, dataset)

    def subset(self, subset_id: int) -> SubsetRecord:
        """A stored subset by id."""
        with self._session() as s:
            row = s.get(SubsetRow, subset_id)
            if row is None:
                raise StoreError(f"no subset with id {subset_id}; plan the work again")
            return _subset_record(row, s.get(DatasetRow, row.dataset_id).key)

    def subset_indices(self, subset_id: int) -> list[int]:
        """A subset's stored indices, in stored order."""
        with self._session() as s:
            return list(
                s.scalars(
                    select(SubsetMemberRow.sample_index)
                    .where(SubsetMemberRow.subset_id == subset_id)
                    .order_by(SubsetMemberRow.position)
                )
            )

    def find_extraction(
        self, model: str, dataset: str, split: str, subset_id: int
    ) -> ExtractionRecord | None:
        """The extraction run of this model's catalogued layer on this subset, if any."""
        with self._session() as s:
            row = _extraction_row(s, model, dataset, split, subset_id)
            return None if row is None else _extraction_record(s, row)

    def start_extraction(self, model: str, dataset: str, split: str, subset_id: int) -> int:
        """Mark an extraction as running (new, or redoing an earlier run); returns its id."""
        with self._session() as s:
            m = _model_row(s, model)
            row = _extraction_row(s, model, dataset, split, subset_id)
            if row is None:
                row = ExtractionRow(
                    model_id=m.id,
                    dataset_id=_dataset_row(s, dataset).id,
                    split=split,
                    subset_id=subset_id,
                    layer=m.module_name,
                    token_rule=m.token_rule,
                    model_fingerprint=model_fingerprint(_model_spec(m)),
                    preprocessing="{}",
                    package_versions="{}",
                )
                s.add(row)
            row.status, row.error, row.started_at, row.finished_at = "running", None, _now(), None
            s.flush()
            return row.id

    def finish_extraction(self, extraction_id: int, info: ExtractionInfo) -> None:
        """Record a complete feature file (already renamed into place) as done."""
        with self._session() as s:
            row = s.get(ExtractionRow, extraction_id)
            if row is None:
                raise StoreError(f"no extraction run with id {extraction_id}")
            row.path, row.n_samples, row.dim, row.dtype = (
                info.path,
                info.n_samples,
                info.dim,
                info.dtype,
            )
            row.preprocessing = json.dumps(info.preprocessing, sort_keys=True)
            row.weights_source, row.weights_sha256 = info.weights_source, info.weights_sha256
            row.package_versions = json.dumps(info.package_versions, sort_keys=True)
            row.status, row.error, row.finished_at = "done", None, _now()

    def fail_extraction(self, extraction_id: int, error: str) -> None:
        """Record why an extraction failed; its file, if any, is not registered."""
        with self._session() as s:
            row = s.get(ExtractionRow, extraction_id)
            if row is not None:
                row.status, row.error, row.finished_at = "failed", error, _now()

    def extractions(
        self, *, dataset: str | None = None, split: str | None = None, status: str | None = None
    ) -> list[ExtractionRecord]:
        """Extraction runs, optionally of one dataset, split or status."""
        with self._session() as s:
            query = select(ExtractionRow).order_by(ExtractionRow.id)
            if dataset is not None:
                query = query.where(ExtractionRow.dataset_id == _dataset_row(s, dataset).id)
            if split is not None:
                query = query.where(ExtractionRow.split == split)
            if status is not None:
                query = query.where(ExtractionRow.status == status)
            return [_extraction_record(s, r) for r in s.scalars(query)]

    # ---- similarities ---------------------------------------------------------------------------

    def ensure_metric(self, slug: str, kind: str, parameters: dict[str, Any]) -> int:
        """Register a metric by slug (idempotent); returns its id."""
        with self._session() as s:
            row = s.scalar(select(MetricRow).where(MetricRow.slug == slug))
            if row is None:
                row = MetricRow(
                    slug=slug, kind=kind, parameters=json.dumps(parameters, sort_keys=True)
                )
                s.add(row)
                s.flush()
            return row.id

    def metric_slugs(self) -> list[str]:
        """Slugs of the registered metrics."""
        with self._session() as s:
            return list(s.scalars(select(MetricRow.slug).order_by(MetricRow.slug)))

    def upsert_pairs(
        self,
        dataset: str,
        metric: str,
        pairs: Iterable[PairValue],
        *,
        subset_id: int | None = None,
        source: str = "computed",
    ) -> int:
        """Store each unordered pair once, replacing earlier values; returns the count."""
        with self._session() as s:
            ds = _dataset_row(s, dataset)
            metric_id = _metric_id(s, metric)
            ids = {k: i for k, i in s.execute(select(ModelRow.key, ModelRow.id))}
            rows = [_pair_row(p, ids, ds.id, metric_id, subset_id, source) for p in pairs]
            table = PairSimilarityRow.__table__
            for start in range(0, len(rows), _CHUNK):
                stmt = _insert(s)(table).values(rows[start : start + _CHUNK])
                update = {
                    c: stmt.excluded[c]
                    for c in (
                        "value",
                        "n_samples",
                        "subset_id",
                        "extraction_a_id",
                        "extraction_b_id",
                        "source",
                        "software_version",
                        "computed_at",
                    )
                }
                s.execute(
                    stmt.on_conflict_do_update(index_elements=_unique_columns(table), set_=update)
                )
            return len(rows)

    def pair_values(self, dataset: str, metric: str) -> dict[tuple[str, str], float]:
        """Stored similarities of one dataset and metric, keyed by (model_a, model_b) as stored."""
        return {(a, b): v for a, b, v in self._pairs(dataset, metric, "p.value")}

    def pair_provenance(
        self, dataset: str, metric: str
    ) -> dict[tuple[str, str], tuple[int | None, int | None, str]]:
        """(extraction_a, extraction_b, source) of each stored pair, keyed as stored."""
        rows = self._pairs(dataset, metric, "p.extraction_a_id, p.extraction_b_id, p.source")
        return {(a, b): (ea, eb, src) for a, b, ea, eb, src in rows}

    def _pairs(self, dataset: str, metric: str, columns: str) -> list[tuple]:
        """(model_a key, model_b key, *columns) of the stored pairs of one dataset and metric."""
        sql = text(
            f"SELECT ma.key, mb.key, {columns} FROM pair_similarities p "
            "JOIN models ma ON ma.id = p.model_a_id JOIN models mb ON mb.id = p.model_b_id "
            "JOIN datasets d ON d.id = p.dataset_id JOIN metrics m ON m.id = p.metric_id "
            "WHERE d.key = :d AND m.slug = :m"
        )
        with self._session() as s:
            return [tuple(r) for r in s.execute(sql, {"d": dataset, "m": metric})]

    # ---- probes ---------------------------------------------------------------------------------

    def upsert_probe(self, probe: ProbeValue) -> None:
        """Store one probe result, replacing an earlier one of the same model, dataset and seed."""
        with self._session() as s:
            row = {
                "model_id": _model_row(s, probe.model).id,
                "dataset_id": _dataset_row(s, probe.dataset).id,
                "seed": probe.seed,
                "learning_rate": probe.learning_rate,
                "weight_decay": probe.weight_decay,
                "val_top1": probe.val_top1,
                "test_top1": probe.test_top1,
                "test_top5": probe.test_top5,
                "test_balanced_acc": probe.test_balanced_acc,
                "n_classes": probe.n_classes,
                "n_train": probe.n_train,
                "n_test": probe.n_test,
                "seconds": probe.seconds,
                "config": json.dumps(probe.config, sort_keys=True),
                "train_extraction_id": probe.train_extraction,
                "test_extraction_id": probe.test_extraction,
                "computed_at": _now(),
            }
            table = ProbeResultRow.__table__
            stmt = _insert(s)(table).values([row])
            update = {
                k: stmt.excluded[k] for k in row if k not in ("model_id", "dataset_id", "seed")
            }
            s.execute(
                stmt.on_conflict_do_update(index_elements=_unique_columns(table), set_=update)
            )

    def probe_seeds(
        self, model: str, dataset: str, *, train_subset: int | None = None,
        test_subset: int | None = None,
    ) -> list[int]:
        """Seeds already probed for this model and dataset (on these train/test subsets)."""
        train = ExtractionRow.__table__.alias("train_run")
        test = ExtractionRow.__table__.alias("test_run")
        with self._session() as s:
            query = select(ProbeResultRow.seed).where(
                ProbeResultRow.model_id == _model_row(s, model).id,
                ProbeResultRow.dataset_id == _dataset_row(s, dataset).id,
            )
            if train_subset is not None:
                query = query.join(train, train.c.id == ProbeResultRow.train_extraction_id).where(
                    train.c.subset_id == train_subset
                )
            if test_subset is not None:
                query = query.join(test, test.c.id == ProbeResultRow.test_extraction_id).where(
                    test.c.subset_id == test_subset
                )
            return list(s.scalars(query.order_by(ProbeResultRow.seed)))

    # ---- read-only SQL --------------------------------------------------------------------------

    def query(
        self, sql: str | TextClause, params: dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple]]:
        """Run one SQL statement and return (column names, rows)."""
        statement = text(sql) if isinstance(sql, str) else sql
        with self.engine.connect() as conn:
            try:
                result = conn.execute(statement, params or {})
            except DBAPIError as exc:
                raise StoreError(_sql_message(exc)) from exc
            if not result.returns_rows:
                return [], []
            return list(result.keys()), [tuple(r) for r in result]


# ---- helpers (module-private, take an open session) ---------------------------------------


def _insert(s: Session):  # noqa: ANN202 - a dialect's insert()
    return postgresql.insert if s.bind.dialect.name == "postgresql" else sqlite.insert


def _unique_columns(table: Table) -> list[str]:
    """ON CONFLICT target: the columns of the table's unique constraint (both dialects)."""
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            return [c.name for c in constraint.columns]
    raise AssertionError(f"{table.name} has no unique constraint")


def _pair_row(
    p: PairValue,
    ids: dict[str, int],
    dataset_id: int,
    metric_id: int,
    subset_id: int | None,
    source: str,
) -> dict[str, Any]:
    for key in (p.model_a, p.model_b):
        if key not in ids:
            raise StoreError(f"unknown model {key!r}; ingest it first (`simcons ingest ...`)")
    if p.model_a == p.model_b:
        raise StoreError(f"self-pair {p.model_a!r}: pairs are of two different models")
    a, b, ea, eb = ids[p.model_a], ids[p.model_b], p.extraction_a, p.extraction_b
    if a > b:
        a, b, ea, eb = b, a, eb, ea
    return {
        "dataset_id": dataset_id,
        "metric_id": metric_id,
        "model_a_id": a,
        "model_b_id": b,
        "value": float(p.value),
        "n_samples": p.n_samples,
        "subset_id": subset_id,
        "extraction_a_id": ea,
        "extraction_b_id": eb,
        "source": source,
        "software_version": __version__,
        "computed_at": _now(),
    }


def _pick(specs: dict, keys: Iterable[str] | None, what: str, fix: str) -> list:
    if keys is None:
        return list(specs.values())
    keys = list(keys)
    missing = [k for k in keys if k not in specs]
    if missing:
        known = ", ".join(list(specs)[:10]) or "none"
        raise StoreError(
            f"unknown {what}{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"(stored: {known}{', ...' if len(specs) > 10 else ''}); add with `{fix}`"
        )
    return [specs[k] for k in keys]


def _model_row(s: Session, key: str) -> ModelRow:
    row = s.scalar(select(ModelRow).where(ModelRow.key == key))
    if row is None:
        raise StoreError(f"unknown model {key!r}; ingest it first (`simcons ingest ...`)")
    return row


def _dataset_row(s: Session, key: str) -> DatasetRow:
    row = s.scalar(select(DatasetRow).where(DatasetRow.key == key))
    if row is None:
        raise StoreError(f"unknown dataset {key!r}; ingest it first (`simcons ingest ...`)")
    return row


def _metric_id(s: Session, slug: str) -> int:
    metric_id = s.scalar(select(MetricRow.id).where(MetricRow.slug == slug))
    if metric_id is None:
        known = ", ".join(s.scalars(select(MetricRow.slug))) or "none yet"
        raise StoreError(f"unknown metric {slug!r} in this store (stored: {known})")
    return metric_id


def _extraction_row(
    s: Session, model: str, dataset: str, split: str, subset_id: int
) -> ExtractionRow | None:
    m = _model_row(s, model)
    return s.scalar(
        select(ExtractionRow).where(
            ExtractionRow.model_id == m.id,
            ExtractionRow.dataset_id == _dataset_row(s, dataset).id,
            ExtractionRow.split == split,
            ExtractionRow.subset_id == subset_id,
            ExtractionRow.layer == m.module_name,
            ExtractionRow.token_rule == m.token_rule,
            ExtractionRow.model_fingerprint == model_fingerprint(_model_spec(m)),
        )
    )


def _model_spec(row: ModelRow) -> ModelSpec:
    return ModelSpec(
        key=row.key,
        loader=row.loader,
        model_name=row.model_name,
        module_name=row.module_name,
        token_rule=row.token_rule,
        loader_params=json.loads(row.loader_params),
        attributes={a.name: a.value for a in row.attributes},
        embedding_dim=row.embedding_dim,
        n_params=row.n_params,
    )


def _dataset_spec(row: DatasetRow) -> DatasetSpec:
    return DatasetSpec(
        key=row.key,
        name=row.name,
        category=row.category,
        source=row.source,
        params=json.loads(row.params),
        benchmark=row.benchmark,
    )


def _subset_record(row: SubsetRow, dataset: str) -> SubsetRecord:
    return SubsetRecord(
        id=row.id,
        dataset=dataset,
        split=row.split,
        rule=row.rule,
        max_samples=row.max_samples,
        per_class=row.per_class,
        seed=row.seed,
        n_samples=row.n_samples,
        fingerprint=row.fingerprint,
    )


def _extraction_record(s: Session, row: ExtractionRow) -> ExtractionRecord:
    return ExtractionRecord(
        id=row.id,
        model=s.get(ModelRow, row.model_id).key,
        dataset=s.get(DatasetRow, row.dataset_id).key,
        split=row.split,
        subset_id=row.subset_id,
        layer=row.layer,
        token_rule=row.token_rule,
        status=row.status,
        path=row.path,
        n_samples=row.n_samples,
        dim=row.dim,
        dtype=row.dtype,
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


_READ_VERBS = ("select", "with", "values", "table", "explain", "show")
_SERVER_SIDE = re.compile(
    r"\b(pg_read_file|pg_read_binary_file|pg_ls_\w+|pg_stat_file|lo_import|lo_export|lo_\w+|"
    r"pg_terminate_backend|pg_cancel_backend|pg_advisory\w*|pg_try_advisory\w*|dblink\w*|"
    r"pg_reload_conf|pg_rotate_logfile|set_config|pg_sleep\w*|pg_switch_wal|"
    r"pg_create_\w*|pg_drop_\w*|pg_notify)\s*\(",
    re.IGNORECASE,
)


def read_only_statement(sql: str) -> str:
    """Check that `sql` is one query (SELECT, WITH, VALUES, TABLE, EXPLAIN, SHOW) and return it.

    The store is also opened read-only; this check adds what a read-only transaction allows a
    PostgreSQL superuser (COPY to a server file, server-file and backend functions) or SQLite
    (ATTACH, PRAGMA).
    """
    body = sql.strip().rstrip(";").strip()
    words = body.split(None, 1)
    if not words or words[0].lower() not in _READ_VERBS:
        raise StoreError(
            f"simcons sql runs one query starting with {', '.join(v.upper() for v in _READ_VERBS)}"
            f"; got {(words[0] if words else 'an empty statement')!r} (the store is read-only here)"
        )
    if ";" in body:
        raise StoreError("simcons sql runs one statement; remove the ';' between statements")
    found = _SERVER_SIDE.search(body)
    if found:
        raise StoreError(
            f"simcons sql does not run {found.group(1)}(): it acts on the server, not on results "
            "(the store is read-only here)"
        )
    return body


def _sql_message(exc: Exception) -> str:
    msg = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    flat = msg.replace(" ", "").replace("-", "").lower()
    if "readonly" in flat:
        return f"simcons sql opens the store read-only and cannot change it ({msg})"
    return f"SQL error: {msg}"
