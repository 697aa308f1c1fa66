"""Shared fixtures: a fresh results store on SQLite and, where configured, on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from simcons.storage import ResultStore, make_engine
from simcons.storage.engine import normalise_url
from simcons.storage.migrate import upgrade

PG_ENV = "SIMCONS_TEST_PG_URL"


def pg_admin_url() -> str | None:
    """The PostgreSQL server tests may create databases on, from $SIMCONS_TEST_PG_URL."""
    url = os.environ.get(PG_ENV)
    return normalise_url(url) if url else None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    admin = pg_admin_url()
    if admin is None:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1/test)")
    name = f"simcons_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A new SQLite database file for one test."""
    return f"sqlite:///{tmp_path / 'simcons.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """An empty database URL, once on SQLite and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return request.getfixturevalue(name)


def _open_store(url: str) -> ResultStore:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return ResultStore(url)


@pytest.fixture
def store(db_url) -> Iterator[ResultStore]:
    """A results store at head, once on each backend."""
    st = _open_store(db_url)
    yield st
    st.close()


@pytest.fixture
def sqlite_store(sqlite_url) -> Iterator[ResultStore]:
    """A results store at head on SQLite, for tests about computation rather than SQL."""
    st = _open_store(sqlite_url)
    yield st
    st.close()
