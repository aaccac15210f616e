"""Apply or revert Alembic migrations programmatically (``nameorigin db``, ``serve`` at start, tests)."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bot.db.engine import create_engine, ensure_sqlite_folder, first_line, sqlite_file


class DatabaseUnavailable(Exception):
    """The database cannot be used: out of reach, unopenable, or migrated by a newer nameorigin.

    The message is one line and hides the password.
    """


@contextmanager
def reaching(database_url: str) -> Iterator[None]:
    """Turn a failure to connect (refused, unknown host, bad password, unopenable file) into ``DatabaseUnavailable``."""
    try:
        yield
    except (OSError, DBAPIError) as exc:  # drivers raise socket errors as they are, the rest wrapped in DBAPIError
        safe = make_url(database_url).render_as_string(hide_password=True)
        raise DatabaseUnavailable(f"cannot use the database {safe}: {type(exc).__name__}: {first_line(exc)}") from exc


def missing_sqlite_file(database_url: str) -> str | None:
    """The path of an SQLite database file that does not exist yet, or None (it exists, or it is no SQLite file)."""
    database = sqlite_file(database_url)
    return None if database is None or Path(database).exists() else database


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the packaged ``migrations`` folder and ``database_url``."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.attributes["database_url"] = database_url
    return config


@contextmanager
def _sqlite_migration_lock(database_url: str) -> Iterator[None]:
    # PostgreSQL serializes migrations with an advisory lock (migrations/env.py); an SQLite file
    # shared by the bot and a cron `nameorigin finetune` gets a lock file beside it.
    database = sqlite_file(database_url)
    if database is None:
        yield
        return
    with open(f"{database}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database up to ``revision``, one process at a time. Blocking: call it off the event loop.

    Raises ``DatabaseUnavailable`` for a database at a revision these migrations do not hold.
    """
    ensure_sqlite_folder(database_url)
    with _sqlite_migration_lock(database_url):
        try:
            command.upgrade(alembic_config(database_url), revision)
        except AlembicError:
            current = current_revision(database_url)
            if is_known_revision(current):
                raise
            # Alembic says only "Can't locate revision", in a traceback; this happens after a rollback.
            safe = make_url(database_url).render_as_string(hide_password=True)
            raise DatabaseUnavailable(
                f"the database {safe} is at revision {current}, which this version of nameorigin does not know: a "
                f"newer version migrated it. Run that one, or first its `nameorigin db downgrade {head_revision()}`"
            ) from None


def downgrade(database_url: str, revision: str) -> None:
    """Migrate the database down to ``revision``, one process at a time. Blocking: call it off the event loop."""
    with _sqlite_migration_lock(database_url):
        command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    """The newest revision in the packaged migrations."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def is_known_revision(revision: str | None) -> bool:
    """Whether the packaged migrations hold ``revision`` (None: an empty database, which they start from)."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return revision is None or revision in {script.revision for script in scripts.walk_revisions()}


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None for an empty database. Blocking: call it off the event loop."""

    async def read() -> str | None:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
        finally:
            await engine.dispose()

    return asyncio.run(read())
