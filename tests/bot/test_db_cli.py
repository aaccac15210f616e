"""``nameorigin db`` and ``serve`` against databases that are missing, unreachable or asked to drop everything."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.db import migrate
from core.cli import main
from tests.bot.commands import nameorigin

UNREACHABLE = "postgresql+asyncpg://bot:hunter2@127.0.0.1:1/bot"  # nothing listens on port 1


@pytest.fixture
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run commands in ``tmp_path``, away from any .env, and with no DATABASE_URL from the shell."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path


def test_downgrade_needs_a_revision_rather_than_dropping_every_table(
    in_tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{in_tmp_path / 'bot.db'}")
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main(["db", "downgrade"])
    assert refused.value.code == 2
    assert "the following arguments are required: revision" in capsys.readouterr().err
    assert main(["db", "downgrade", "base"]) == 0
    assert capsys.readouterr().out == "database at revision base (empty)\n"


def test_current_on_a_missing_sqlite_file_says_so_and_creates_nothing(
    in_tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///data/typo.db")
    assert main(["db", "current"]) == 2
    assert capsys.readouterr().err == (
        "nameorigin db: error: there is no database at data/typo.db yet: "
        "`nameorigin db upgrade` or `serve` creates it\n"
    )
    assert list(in_tmp_path.iterdir()) == []


@pytest.mark.parametrize("action", ["current", "upgrade"])
def test_an_unreachable_database_is_one_line_without_its_password(
    action: str, in_tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    assert main(["db", action]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(
        "nameorigin db: error: cannot use the database postgresql+asyncpg://bot:***@127.0.0.1:1/bot: "
    )
    assert "hunter2" not in line


def test_serve_with_an_unreachable_database_stops_in_one_line(tmp_path: Path) -> None:
    # A process of its own: serve configures logging for a running service.
    result = nameorigin(tmp_path, "serve", DATABASE_URL=UNREACHABLE, TELEGRAM_BOT_TOKEN="123:abc")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "cannot use the database postgresql+asyncpg://bot:***@127.0.0.1:1/bot: " in line
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("action", "revision", "reason"),
    [
        ("upgrade", "nonsense", "Can't locate revision identified by 'nonsense'"),
        ("downgrade", "nonsense", "Can't locate revision identified by 'nonsense'"),
        ("upgrade", "+1", "Relative revision +1 didn't produce 1 migrations"),
    ],
)
def test_a_revision_that_leads_nowhere_is_one_line(
    action: str,
    revision: str,
    reason: str,
    in_tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{in_tmp_path / 'bot.db'}")
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["db", action, revision]) == 2
    assert capsys.readouterr().err == f"nameorigin db: error: cannot {action} to {revision!r}: {reason}\n"
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out == f"database at revision {migrate.head_revision()}\n"  # nothing changed


def test_a_version_table_alembic_cannot_read_is_one_line(
    in_tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{in_tmp_path / 'bot.db'}")
    assert main(["db", "upgrade"]) == 0
    with sqlite3.connect(in_tmp_path / "bot.db") as connection:
        connection.execute("INSERT INTO alembic_version VALUES ('0001')")  # two rows: two heads at once
    capsys.readouterr()
    assert main(["db", "current"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("nameorigin db: error: cannot read the revision: Version table 'alembic_version' has ")


def test_a_database_path_that_is_a_folder_is_one_line(
    in_tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Docker makes a folder when it mounts a database file that does not exist yet."""
    (in_tmp_path / "bot.db").mkdir()
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///bot.db")
    for action in ("upgrade", "current"):
        assert main(["db", action]) == 2
        error = capsys.readouterr().err  # SQLite's own failure also printed tracebacks from aiosqlite's thread
        assert error.splitlines() == [
            "nameorigin db: error: cannot use the database sqlite+aiosqlite:///bot.db: IsADirectoryError: "
            "[Errno 21] an SQLite database is a file, not a folder: 'bot.db'"
        ]
