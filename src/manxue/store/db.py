"""Open the database named by a URL and bring its schema to the newest migration."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and pick the installed psycopg 3 driver for it."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def open_engine(url: str, *, migrate: bool = True) -> Engine:
    """An Engine for `url`; SQLite files get WAL mode and their folder is created."""
    url = normalise_url(url)
    u = make_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if u.drivername.startswith("sqlite"):
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            _create_private(Path(u.database).expanduser())
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if u.drivername.startswith("sqlite"):
        _bind_none_and_bools_directly()
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        upgrade(engine)
    return engine


def _create_private(path: Path) -> None:
    """Create the SQLite file, and its folder when missing, readable by this user only
    (0600, the folder 0700): it holds key hashes, tenants and the ledger. SQLite gives the
    -wal and -shm files it makes later the database file's own mode. An existing file or
    folder keeps the mode it has."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)  # an empty file is a new, empty database to SQLite


def _bind_none_and_bools_directly() -> None:
    """Spare the sqlite3 module its slow path for None and bool parameters.

    It binds exact int, float, str and bytes at once; for any other value, None and bool
    included, it looks for an adapter, then asks the protocol for `__adapt__` (which on
    Python 3.11 raises and clears an AttributeError each time), then the value for
    `__conform__`. A ledger row carries three such values, and that search was a fifth of the
    flusher's work per row. With adapters registered the first lookup succeeds: None still
    binds as NULL (`{}.get` returns None for it, in C) and a bool as 0 or 1, as before.
    """
    sqlite3.register_adapter(type(None), cast(Callable[[None], None], {}.get))
    sqlite3.register_adapter(bool, int)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


# any constant: every manxue process migrating one PostgreSQL database takes the same lock
_MIGRATION_LOCK = 0x6D616E78   # "manx"


def upgrade(engine: Engine) -> None:
    """Apply every migration not yet applied (numbered, add-only). On PostgreSQL the
    migrating transaction holds an advisory lock first, so replicas that start together on an
    empty database migrate one after another instead of racing to create the same tables."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
