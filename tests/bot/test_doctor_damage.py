"""``nameorigin doctor`` finds a damaged SQLite file, where the bot would only fail mid-guess."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.config import Settings
from bot.db import migrate
from tests.bot.test_doctor import NO_BOT_API, run_doctor
from tests.databases import execute


def overwrite_page_of(database: Path, name: str) -> None:
    """Fill the first page of table or index ``name`` with garbage, as a failing disk or a torn copy would."""
    with sqlite3.connect(database) as connection:
        (page,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()
        (size,) = connection.execute("PRAGMA page_size").fetchone()
    connection.close()
    with database.open("r+b") as file:
        file.seek((page - 1) * size)
        file.write(b"\x0d" + b"\xff" * 200)


def point_doctor_at(url: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Doctor's settings name the database at ``url``, migrated here, and nothing else."""
    monkeypatch.chdir(folder)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", NO_BOT_API)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:TEST-token")
    monkeypatch.setenv("DATABASE_URL", url)
    migrate.upgrade(url)


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A migrated SQLite file in ``tmp_path``, and doctor's settings pointing at it and nothing else."""
    path = tmp_path / "bot.db"
    point_doctor_at(f"sqlite+aiosqlite:///{path}", tmp_path, monkeypatch)
    return path


@pytest.mark.parametrize(
    ("damaged", "says"),
    [
        # An index no doctor query reads: the check passed, and storing any guess failed.
        ("ix_guesses_surname", ": btreeInitPage() returns error code 11"),
        # The table of model versions: doctor stopped with a traceback.
        ("model_versions", "DatabaseError: database disk image is malformed"),
    ],
)
async def test_a_damaged_database_file_is_a_problem_with_what_to_do(
    database: Path,
    damaged: str,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = await run_doctor(monkeypatch, capsys)
    assert any(line.startswith("✓ database: reachable") for line in lines), lines
    await asyncio.to_thread(overwrite_page_of, database, damaged)
    lines = await run_doctor(monkeypatch, capsys)
    [line] = [line for line in lines if line.startswith("✗ database")]
    assert line.startswith("✗ database: the file is damaged (") and line.endswith(
        "): restore the latest backup (see Backups in the README)"
    )
    assert says in line
    assert any(line.startswith("✓ model: gru-") for line in lines), lines  # the other checks still ran


async def test_a_query_failing_for_another_reason_is_not_called_damage(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Any error of the live-version query was "the file is damaged: restore the latest backup", on PostgreSQL
    # too: a dropped connection, a missing privilege or table, each answered by restoring a backup.
    await asyncio.to_thread(point_doctor_at, database_url, tmp_path, monkeypatch)
    await execute(database_url, "ALTER TABLE model_versions RENAME TO model_versions_old")
    lines = await run_doctor(monkeypatch, capsys)
    [line] = [line for line in lines if line.startswith("✗ database")]
    assert "damaged" not in line and "backup" not in line, line
    assert line.startswith("✗ database: cannot read it: ") and "model_versions" in line, line
