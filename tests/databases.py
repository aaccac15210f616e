"""Test databases: an SQLite file, or a fresh database on the PostgreSQL server named by ``TEST_POSTGRES_URL``."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from bot.db.engine import create_engine

# An admin URL such as postgresql+asyncpg://user:password@127.0.0.1:5432/postgres; .ci/run sets it.
POSTGRES_ENV = "TEST_POSTGRES_URL"
# Set by CI so that a missing server fails the run instead of skipping the PostgreSQL half.
REQUIRE_POSTGRES_ENV = "REQUIRE_POSTGRES"


async def _admin(sql: str) -> None:
    engine = create_async_engine(os.environ[POSTGRES_ENV], isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


def postgres_database() -> Iterator[str]:
    """Create an empty database for one test, yield its URL, drop it afterwards."""
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        if os.environ.get(REQUIRE_POSTGRES_ENV):
            pytest.fail(f"{POSTGRES_ENV} is not set but {REQUIRE_POSTGRES_ENV} is")
        pytest.skip(f"set {POSTGRES_ENV} to run the PostgreSQL variant")
    name = f"nameorigin_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except DBAPIError:
            # FORCE refuses to end an autovacuum worker busy in the database (a backend of no role the test
            # user may signal). A plain drop cancels autovacuum itself; the tests' own connections are closed.
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}"'))


def sqlite_database(folder: Path) -> str:
    """The URL of an SQLite file in ``folder``."""
    return f"sqlite+aiosqlite:///{folder / 'bot.db'}"


async def fetch(database_url: str, sql: str) -> list[tuple[object, ...]]:
    """Rows of one query, on either backend."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(sql))]
    finally:
        await engine.dispose()


async def execute(database_url: str, sql: str) -> None:
    """Run one statement and commit it, on either backend."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()
