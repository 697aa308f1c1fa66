"""Engines for the store: SQLite (WAL, busy timeout, sqrt) or PostgreSQL, optionally read-only."""

from __future__ import annotations

import math
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

DEFAULT_HOME = "simcons-data"
DB_FILE = "simcons.db"


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data folder: explicit, else $SIMCONS_HOME, else ./simcons-data."""
    return Path(explicit or os.environ.get("SIMCONS_HOME") or DEFAULT_HOME).resolve()


def database_url(explicit: str | None = None, home: str | Path | None = None) -> str:
    """The database URL: explicit, else $SIMCONS_DB, else SQLite in the data folder."""
    url = explicit or os.environ.get("SIMCONS_DB")
    if url:
        return normalise_url(url)
    return f"sqlite:///{data_dir(home) / DB_FILE}"


def normalise_url(url: str) -> str:
    """Let `postgresql://` URLs use psycopg 3, the driver simcons installs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """Create an engine; SQLite gets WAL, BEGIN IMMEDIATE, a busy timeout, foreign keys, sqrt."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, read_only=read_only)
    connect_args = {"options": "-c default_transaction_read_only=on"} if read_only else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_engine(url: str, *, read_only: bool) -> Engine:
    db = make_url(url).database
    if db and db != ":memory:":
        path = Path(db)
        if read_only:
            if not path.exists():
                raise FileNotFoundError(f"no database at {path}; run `simcons db init` first")
            url = f"sqlite:///file:{path}?mode=ro&uri=true"
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI connection
        dbapi_conn.isolation_level = None  # simcons emits BEGIN itself, below
        dbapi_conn.create_function("sqrt", 1, _sqrt, deterministic=True)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        if not read_only:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001 - a Connection
        # A writer takes the write lock up front, so concurrent workers queue on the busy
        # timeout instead of failing when a read lock cannot be upgraded.
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _sqrt(x: float | None) -> float | None:
    """SQLite's sqrt when its math functions are not compiled in; NULL for NULL or negatives."""
    if x is None or x < 0:
        return None
    return math.sqrt(x)
