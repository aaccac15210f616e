"""``nameorigin db`` and ``serve`` against databases that are missing, unreachable or asked to drop everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bot.commands import nameorigin

UNREACHABLE = "postgresql+asyncpg://bot:hunter2@127.0.0.1:1/bot"  # nothing listens on port 1


def test_downgrade_needs_a_revision_rather_than_dropping_every_table(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    assert nameorigin(tmp_path, "db", "upgrade", DATABASE_URL=url).returncode == 0
    refused = nameorigin(tmp_path, "db", "downgrade", DATABASE_URL=url)
    assert refused.returncode == 2 and "the following arguments are required: revision" in refused.stderr
    assert (
        "database at revision base (empty)" in nameorigin(tmp_path, "db", "downgrade", "base", DATABASE_URL=url).stdout
    )


def test_current_on_a_missing_sqlite_file_says_so_and_creates_nothing(tmp_path: Path) -> None:
    result = nameorigin(tmp_path, "db", "current", DATABASE_URL="sqlite+aiosqlite:///data/typo.db")
    assert result.returncode == 2
    assert result.stderr == (
        "nameorigin db: error: there is no database at data/typo.db yet: "
        "`nameorigin db upgrade` or `serve` creates it\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [("db", "current"), ("db", "upgrade"), ("serve",)])
def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path, command: tuple[str, ...]) -> None:
    result = nameorigin(tmp_path, *command, DATABASE_URL=UNREACHABLE, TELEGRAM_BOT_TOKEN="123:abc")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "cannot use the database postgresql+asyncpg://bot:***@127.0.0.1:1/bot: " in line, line
    assert "hunter2" not in result.stderr
