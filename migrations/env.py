"""Alembic environment: runs simcons' revisions on the connection simcons.storage.migrate passes."""

from __future__ import annotations

import os

from alembic import context

from simcons.storage.engine import database_url, make_engine
from simcons.storage.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Run revisions on the given connection, or on one opened from sqlalchemy.url."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(
        database_url(os.environ.get("SIMCONS_DB") or config.get_main_option("sqlalchemy.url"))
    )
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # noqa: ANN001 - a SQLAlchemy Connection
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("simcons migrations run online only: use `simcons db upgrade`")
run_migrations_online()
