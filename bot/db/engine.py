"""Engine and session factory, built on demand (never at import) so tests can use temporary databases."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 5000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits; the busy timeout makes a writer wait, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL never corrupts the database; it only skips an fsync per commit (a power cut may
    # lose the last commits, a crash of the bot loses nothing).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def first_line(error: object) -> str:
    """An error's message without the further lines drivers and SQLAlchemy add ("(Background on this error…")."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def sqlite_file(url: str) -> str | None:
    """The path of the SQLite database file ``url`` names, or None (another backend, or an in-memory database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of an SQLite database file so a first start does not fail.

    Raises ``IsADirectoryError`` when the file is a folder (Docker makes one when it mounts a file that
    does not exist yet): SQLite's own "unable to open database file" came with stray thread tracebacks.
    """
    database = sqlite_file(url)
    if database is not None:
        if Path(database).is_dir():
            raise IsADirectoryError(errno.EISDIR, "an SQLite database is a file, not a folder", database)
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; SQLite connections get WAL mode, a busy timeout and foreign keys."""
    ensure_sqlite_folder(url)
    # hide_parameters: a failed statement's message would otherwise carry users' ids and names into the logs.
    if make_url(url).get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, hide_parameters=True)
    # SQLite allows one writer at a time and makes the others sleep-and-retry inside its busy handler
    # (in steps of up to 100 ms). One pooled connection queues writers in asyncio instead: measured
    # several times the throughput under concurrent updates.
    engine = create_async_engine(url, pool_size=1, max_overflow=0, hide_parameters=True)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
