"""The job queue: idempotent enqueue, atomic claims with leases on the database's clock, retries.

Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL and a `BEGIN IMMEDIATE` transaction on SQLite
(see simcons.storage.engine), so two workers never hold the same job. A lease that is not renewed
by its worker's heartbeat expires and the job is claimed again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, TextClause, bindparam, text

from simcons.storage.store import ResultStore

STATUSES = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class NewJob:
    """Work to queue: its kind, unique key, payload, and the keys of the jobs it waits for."""

    kind: str
    key: str
    payload: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    priority: int = 0


@dataclass(frozen=True)
class Job:
    """A claimed job, as the worker sees it."""

    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


@dataclass(frozen=True)
class JobFailure:
    """A failed (or retrying) job and its last error."""

    id: int
    kind: str
    key: str
    status: str
    attempts: int
    error: str
    traceback: str | None = field(default=None, repr=False)


def _now_sql(conn: Connection) -> str:
    if conn.dialect.name == "postgresql":
        return "(now() AT TIME ZONE 'utc')"
    return "datetime('now')"


def _later_sql(conn: Connection) -> str:
    """The database clock plus :lease seconds."""
    if conn.dialect.name == "postgresql":
        return "((now() AT TIME ZONE 'utc') + make_interval(secs => :lease))"
    return "datetime('now', '+' || CAST(:lease AS INTEGER) || ' seconds')"


_CLAIMABLE = """
SELECT j.id FROM jobs j
WHERE (j.status = 'queued' OR (j.status = 'running' AND j.lease_expires_at < {now}))
  {kinds}
  AND NOT EXISTS (
    SELECT 1 FROM job_dependencies dep JOIN jobs d ON d.id = dep.depends_on_id
    WHERE dep.job_id = j.id AND d.status <> 'done')
ORDER BY j.priority, j.id
LIMIT 1
{lock}
"""


def _with_kinds(sql: str, kinds: Sequence[str] | None) -> tuple[TextClause, dict[str, Any]]:
    """`sql` (ending in a WHERE clause) narrowed to these job kinds, with its parameters."""
    if not kinds:
        return text(sql), {}
    clause = text(sql + " AND kind IN :kinds").bindparams(bindparam("kinds", expanding=True))
    return clause, {"kinds": list(kinds)}


class JobQueue:
    """Queue operations over a store's engine; one transaction per method."""

    def __init__(self, store: ResultStore) -> None:
        self.engine = store.engine

    def enqueue(self, jobs: Sequence[NewJob], *, max_attempts: int = 3) -> int:
        """Queue jobs whose keys are new (others are left as they are); returns how many."""
        if not jobs:
            return 0
        with self.engine.begin() as conn:
            existing = self._ids(conn, [j.key for j in jobs])
            new = [j for j in jobs if j.key not in existing]
            if new:
                conn.execute(
                    text(
                        "INSERT INTO jobs (kind, key, payload, status, priority, attempts, "
                        "max_attempts) VALUES (:kind, :key, :payload, 'queued', :priority, 0, :max)"
                    ),
                    [
                        {"kind": j.kind, "key": j.key, "payload": json.dumps(j.payload),
                         "priority": j.priority, "max": max_attempts}
                        for j in new
                    ],
                )
            ids = self._ids(conn, [j.key for j in jobs] + [d for j in new for d in j.depends_on])
            deps = [
                {"job": ids[j.key], "dep": ids[d]} for j in new for d in j.depends_on if d in ids
            ]
            missing = {d for j in new for d in j.depends_on if d not in ids}
            if missing:
                raise ValueError(f"jobs depend on unqueued work: {', '.join(sorted(missing))}")
            if deps:
                insert = "INSERT INTO job_dependencies (job_id, depends_on_id) VALUES (:job, :dep)"
                conn.execute(text(insert), deps)
            return len(new)

    def _ids(self, conn: Connection, keys: Iterable[str]) -> dict[str, int]:
        keys = sorted(set(keys))
        found: dict[str, int] = {}
        for start in range(0, len(keys), 500):
            stmt = text("SELECT key, id FROM jobs WHERE key IN :keys").bindparams(
                bindparam("keys", expanding=True)
            )
            found.update(dict(conn.execute(stmt, {"keys": keys[start : start + 500]}).all()))
        return found

    def claim(
        self, owner: str, *, lease_seconds: float, kinds: Sequence[str] | None = None
    ) -> Job | None:
        """Atomically take the next runnable job (queued, or with an expired lease), or None.

        A job whose lease expired after its last allowed attempt is failed instead of re-run.
        """
        while True:
            with self.engine.begin() as conn:
                job_id = self._next_id(conn, kinds)
                if job_id is None:
                    return None
                row = conn.execute(
                    text("SELECT kind, key, payload, attempts, max_attempts FROM jobs "
                         "WHERE id = :i"),
                    {"i": job_id},
                ).one()
                now = _now_sql(conn)
                if row.attempts >= row.max_attempts:
                    conn.execute(
                        text(
                            "UPDATE jobs SET status = 'failed', lease_owner = NULL, "
                            f"lease_expires_at = NULL, finished_at = {now}, last_error = :e "
                            "WHERE id = :i"
                        ),
                        {"i": job_id, "e": f"gave up after {row.attempts} attempts: the worker "
                         "stopped renewing its lease (killed, or out of memory?)"},
                    )
                    continue
                conn.execute(
                    text(
                        "UPDATE jobs SET status = 'running', lease_owner = :o, "
                        f"lease_expires_at = {_later_sql(conn)}, heartbeat_at = {now}, "
                        f"started_at = {now}, attempts = attempts + 1 WHERE id = :i"
                    ),
                    {"o": owner, "lease": lease_seconds, "i": job_id},
                )
                return Job(job_id, row.kind, row.key, json.loads(row.payload), row.attempts + 1,
                           row.max_attempts)

    def _next_id(self, conn: Connection, kinds: Sequence[str] | None) -> int | None:
        lock = "FOR UPDATE OF j SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
        sql = text(_CLAIMABLE.format(
            now=_now_sql(conn), lock=lock, kinds="AND j.kind IN :kinds" if kinds else ""
        ))
        params: dict[str, Any] = {}
        if kinds:
            sql = sql.bindparams(bindparam("kinds", expanding=True))
            params["kinds"] = list(kinds)
        return conn.execute(sql, params).scalar()

    def heartbeat(self, job_id: int, owner: str, *, lease_seconds: float) -> bool:
        """Renew a lease; False when the job is no longer this owner's (it was reclaimed)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                text(
                    f"UPDATE jobs SET lease_expires_at = {_later_sql(conn)}, "
                    f"heartbeat_at = {_now_sql(conn)} "
                    "WHERE id = :i AND lease_owner = :o AND status = 'running'"
                ),
                {"i": job_id, "o": owner, "lease": lease_seconds},
            )
            return result.rowcount == 1

    def complete(self, job_id: int, owner: str) -> bool:
        """Mark the owner's job done; False if its lease had been lost to another worker."""
        with self.engine.begin() as conn:
            result = conn.execute(
                text(
                    "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL, "
                    f"finished_at = {_now_sql(conn)}, last_error = NULL, traceback = NULL "
                    "WHERE id = :i AND lease_owner = :o AND status = 'running'"
                ),
                {"i": job_id, "o": owner},
            )
            return result.rowcount == 1

    def fail(self, job_id: int, owner: str, error: str, traceback: str | None = None) -> str:
        """Record an error: the job is queued again until its attempts run out, then failed."""
        with self.engine.begin() as conn:
            result = conn.execute(
                text(
                    "UPDATE jobs SET status = CASE WHEN attempts >= max_attempts THEN 'failed' "
                    "ELSE 'queued' END, lease_owner = NULL, lease_expires_at = NULL, "
                    f"finished_at = {_now_sql(conn)}, last_error = :e, traceback = :t "
                    "WHERE id = :i AND lease_owner = :o AND status = 'running'"
                ),
                {"i": job_id, "o": owner, "e": error, "t": traceback},
            )
            if result.rowcount != 1:
                return "lost"
            return conn.execute(text("SELECT status FROM jobs WHERE id = :i"), {"i": job_id}
                                ).scalar_one()

    def release(self, job_id: int, owner: str) -> bool:
        """Give a job back untouched (graceful stop): queued again, this attempt not counted."""
        with self.engine.begin() as conn:
            result = conn.execute(
                text(
                    "UPDATE jobs SET status = 'queued', lease_owner = NULL, "
                    "lease_expires_at = NULL, attempts = attempts - 1 "
                    "WHERE id = :i AND lease_owner = :o AND status = 'running'"
                ),
                {"i": job_id, "o": owner},
            )
            return result.rowcount == 1

    def retry_failed(self, kinds: Sequence[str] | None = None) -> int:
        """Queue failed jobs again with fresh attempts; returns how many."""
        sql, params = _with_kinds(
            "UPDATE jobs SET status = 'queued', attempts = 0 WHERE status = 'failed'", kinds
        )
        with self.engine.begin() as conn:
            return conn.execute(sql, params).rowcount

    def unfinished(self, kinds: Sequence[str] | None = None) -> int:
        """Jobs queued or running (of these kinds): work that may still become claimable."""
        sql, params = _with_kinds(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')", kinds
        )
        with self.engine.connect() as conn:
            return conn.execute(sql, params).scalar_one()

    def counts(self) -> dict[str, dict[str, int]]:
        """Jobs per kind and status."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status")
            ).all()
        out: dict[str, dict[str, int]] = {}
        for kind, status, n in rows:
            out.setdefault(kind, dict.fromkeys(STATUSES, 0))[status] = n
        return dict(sorted(out.items()))

    def failures(self) -> list[JobFailure]:
        """Failed jobs, and queued ones that have failed before, with their last errors."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, kind, key, status, attempts, last_error, traceback FROM jobs "
                    "WHERE last_error IS NOT NULL AND status <> 'done' ORDER BY id"
                )
            ).all()
        return [JobFailure(r.id, r.kind, r.key, r.status, r.attempts, r.last_error, r.traceback)
                for r in rows]

    def payloads(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """(key, payload) of every job of one kind, for planning the difference."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT key, payload FROM jobs WHERE kind = :k ORDER BY id"), {"k": kind}
            ).all()
        return [(k, json.loads(p)) for k, p in rows]

    def keys(self, kind: str | None = None) -> set[str]:
        """Keys of all queued jobs (of one kind)."""
        with self.engine.connect() as conn:
            sql = "SELECT key FROM jobs" + (" WHERE kind = :k" if kind else "")
            return set(conn.execute(text(sql), {"k": kind} if kind else {}).scalars())
