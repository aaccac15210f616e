"""Apply or revert Alembic migrations programmatically (``nameorigin db``, ``serve`` at start, tests)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url

from bot.db.engine import ensure_sqlite_folder


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the packaged ``migrations`` folder and ``database_url``."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database up to ``revision``. Blocking: call it off the event loop."""
    ensure_sqlite_folder(database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Migrate the database down to ``revision``. Blocking: call it off the event loop."""
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    """The newest revision in the packaged migrations."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None for an empty database."""
    sync_url = make_url(database_url).set(drivername=make_url(database_url).get_backend_name())
    engine = create_sync_engine(sync_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
