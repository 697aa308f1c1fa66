"""Schema revisions: create, upgrade, downgrade and check the store, through Alembic in code."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

#: Any constant: the key of the PostgreSQL advisory lock that serialises upgrades.
_UPGRADE_LOCK = 7_301_925_164


class SchemaError(RuntimeError):
    """The store is missing or at another revision; the message names the command that fixes it."""


def migrations_dir() -> Path:
    """The Alembic script folder, shipped in the package as `simcons._migrations`."""
    return Path(str(resources.files("simcons._migrations")))


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision this version of simcons knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "migrations folder has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    """The store's revision, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the store to `revision`, serialised on PostgreSQL by an advisory lock.

    A database that holds tables but no simcons revision is refused, never written to.
    """
    with engine.begin() as conn:
        _lock(conn)
        if MigrationContext.configure(conn).get_current_revision() is None:
            tables = inspect(conn).get_table_names()
            if tables:
                where = engine.url.render_as_string(hide_password=True)
                raise SchemaError(
                    f"{where} holds other tables ({', '.join(sorted(tables)[:5])}) and no "
                    "simcons store; give simcons an empty database of its own"
                )
        command.upgrade(_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the store back to `revision` (for developers and tests)."""
    with engine.begin() as conn:
        _lock(conn)
        command.downgrade(_config(conn), revision)


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _UPGRADE_LOCK})


def check_schema(engine: Engine, shown_url: str | None = None) -> None:
    """Raise SchemaError unless the store exists and is at this simcons' head revision."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    where = shown_url or engine.url.render_as_string(hide_password=True)
    if current is None:
        tables = inspect(engine).get_table_names()
        hint = "it has tables but no simcons revision" if tables else "it is empty"
        raise SchemaError(f"no simcons store at {where} ({hint}); run `simcons db init` first")
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if current in known:
        raise SchemaError(
            f"the store at {where} is at schema revision {current}, this simcons needs {head}; "
            "run `simcons db upgrade` (results are kept)"
        )
    raise SchemaError(
        f"the store at {where} is at schema revision {current}, which this simcons does not know "
        f"(its newest is {head}); upgrade simcons itself"
    )
