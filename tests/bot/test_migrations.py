from pathlib import Path

import sqlalchemy as sa

from bot.db import migrate
from bot.db.models import Base


def table_names(path: Path) -> set[str]:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_to_head_and_back_to_base(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bot.db"
    url = f"sqlite+aiosqlite:///{path}"
    migrate.upgrade(url)
    assert table_names(path) == {"alembic_version", "guesses", "corrections", "model_versions"}
    assert migrate.current_revision(url) == migrate.head_revision()
    migrate.downgrade(url)
    assert table_names(path) == {"alembic_version"}
    assert migrate.current_revision(url) is None
    migrate.upgrade(url)  # and up again: the downgrade left nothing behind
    assert "corrections" in table_names(path)


def test_migrations_match_the_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    path = tmp_path / "bot.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []
