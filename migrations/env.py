"""Alembic environment: runs migrations over the async engine the bot uses."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import create_engine
from bot.db.models import Base

MIGRATION_LOCK_KEY = 0x6E616D65  # "name": any constant shared by every process of this app
config = context.config
target_metadata = Base.metadata


def _url() -> str:
    # The URL arrives through attributes, not the ini file, so '%' in passwords needs no escaping.
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to Alembic")
    return str(url)


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table instead
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas starting together migrate one at a time; the later ones then find nothing to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


def _transactional_sqlite_ddl(engine: AsyncEngine) -> None:
    """Make SQLite run a migration as one transaction, DDL included (SQLAlchemy's recipe for the sqlite3 driver).

    The driver opens a transaction only before INSERT, UPDATE or DELETE, so each CREATE or DROP
    commits at once: a migration that failed (or was killed) midway left tables behind, and every
    later upgrade, so every start of the bot, failed on them.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _driver_leaves_transactions_alone(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # takes the write lock now, not halfway through


async def _run_online() -> None:
    engine = create_engine(_url())
    if engine.dialect.name == "sqlite":
        _transactional_sqlite_ddl(engine)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_and_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, render_as_batch=True, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
