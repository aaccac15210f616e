"""Alembic migrations on both backends: up, down, up again, and agreement with the ORM models."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from bot.db import migrate
from bot.db.engine import create_engine
from bot.db.models import Base
from tests.databases import postgres_database


async def _inspect(url: str, what: str) -> object:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            if what == "tables":
                return await connection.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
            return await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await engine.dispose()


def table_names(url: str) -> object:
    return asyncio.run(_inspect(url, "tables"))


def test_upgrade_to_head_and_back_to_base(database_url: str) -> None:
    migrate.upgrade(database_url)
    assert table_names(database_url) == {"alembic_version", "guesses", "corrections", "model_versions"}
    assert migrate.current_revision(database_url) == migrate.head_revision()
    migrate.downgrade(database_url, "base")
    assert table_names(database_url) == {"alembic_version"}
    assert migrate.current_revision(database_url) is None
    migrate.upgrade(database_url)  # and up again: the downgrade left nothing behind
    assert "corrections" in table_names(database_url)  # type: ignore[operator]


def test_a_step_down_from_the_guess_age_index_and_up_again(database_url: str) -> None:
    migrate.upgrade(database_url)
    migrate.downgrade(database_url, "0002")
    assert asyncio.run(_inspect(database_url, "diff")) != []  # the index on guesses.created_at is gone
    migrate.upgrade(database_url)  # and created again
    assert migrate.current_revision(database_url) == migrate.head_revision()
    assert asyncio.run(_inspect(database_url, "diff")) == []


async def _set_revision(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        await engine.dispose()


def test_a_database_a_newer_version_migrated_is_refused_in_one_line(database_url: str) -> None:
    """After rolling back to an older release: Alembic's own error is a traceback that never says why."""
    migrate.upgrade(database_url)
    asyncio.run(_set_revision(database_url, "9999"))
    with pytest.raises(migrate.DatabaseUnavailable, match="revision 9999, which this version of nameorigin does not"):
        migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == "9999"  # left as it was


def test_migrations_match_the_models(database_url: str) -> None:
    migrate.upgrade(database_url)
    assert asyncio.run(_inspect(database_url, "diff")) == []


def test_concurrent_upgrades_are_safe(database_url: str, tmp_path: Path) -> None:
    """Two processes (two replicas starting at once) both migrate; neither fails and the schema is applied once."""
    env = dict(os.environ, DATABASE_URL=database_url)
    command = [sys.executable, "-m", "core.cli", "db", "upgrade"]
    processes = [subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE) for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
    assert migrate.current_revision(database_url) == migrate.head_revision()


async def _execute(url: str, sql: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text(sql))
    finally:
        await engine.dispose()


def test_a_migration_that_fails_midway_leaves_nothing_behind(database_url: str) -> None:
    """A failed upgrade must roll back whole, on SQLite too, or no later upgrade (and no `serve`) can run."""
    migrate.upgrade(database_url, "0001")
    row = "INSERT INTO model_versions (version, kind, checkpoint_path, metrics, active, created_at) VALUES "
    asyncio.run(_execute(database_url, row + "('gru-a', 'gru', 'a', '{}', true, CURRENT_TIMESTAMP)"))
    asyncio.run(_execute(database_url, row + "('gru-b', 'gru', 'b', '{}', true, CURRENT_TIMESTAMP)"))
    with pytest.raises(IntegrityError):  # 0002's one-live-model index, after its table copy has begun
        migrate.upgrade(database_url)
    assert table_names(database_url) == {"alembic_version", "guesses", "corrections", "model_versions"}
    assert migrate.current_revision(database_url) == "0001"

    asyncio.run(_execute(database_url, "UPDATE model_versions SET active = false WHERE version = 'gru-a'"))
    migrate.upgrade(database_url)  # once the data is fixed, the same upgrade goes through
    assert migrate.current_revision(database_url) == migrate.head_revision()


async def _migrate_two_at_once_behind_a_barrier(url: str, cwd: Path) -> list[tuple[int, bytes]]:
    """Start two `db upgrade` processes that both wait on a table lock this test holds, then release them together.

    Left alone, two processes start a second or so apart and never overlap; the barrier makes them meet.
    """
    engine = create_engine(url)
    try:
        async with engine.connect() as barrier:
            await barrier.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            await barrier.commit()
            await barrier.execute(sa.text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
            env = dict(os.environ, DATABASE_URL=url)
            processes = [
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "core.cli", "db", "upgrade", env=env, cwd=cwd, stderr=subprocess.PIPE
                )
                for _ in range(2)
            ]
            waiting = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            async with engine.connect() as monitor:
                for _ in range(600):  # until both wait: on the table lock, or on each other's migration lock
                    if (await monitor.execute(waiting)).scalar_one() >= 2:
                        break
                    await monitor.rollback()  # pg_stat_activity holds one snapshot per transaction
                    await asyncio.sleep(0.05)
                else:
                    raise TimeoutError("the two upgrades never reached the barrier")
            await barrier.rollback()  # releases both at once
            return [(await process.wait(), await process.stderr.read()) for process in processes if process.stderr]
    finally:
        await engine.dispose()


def test_upgrades_that_meet_take_turns(tmp_path: Path) -> None:
    """Two replicas migrating in the same instant: the migration lock makes the second find nothing to do."""
    for url in postgres_database():
        for returncode, stderr in asyncio.run(_migrate_two_at_once_behind_a_barrier(url, tmp_path)):
            assert returncode == 0, stderr.decode()
        assert migrate.current_revision(url) == migrate.head_revision()
