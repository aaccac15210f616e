"""The bot's side of a fine-tune: how it reads what the child process did when the bot stops meanwhile."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bot import finetune_runner
from bot.app import load_predictors
from bot.config import Settings, load_settings
from bot.db import migrate, versions
from bot.db.engine import create_engine, session_factory
from bot.finetune_job import RunReport
from bot.finetune_runner import FinetuneRunner, RunFailed, RunOutcome
from bot.live_model import LiveModel
from tests.bot.verdicts import read_versions
from tests.databases import sqlite_database


async def stopped_while_waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, child_code: str) -> RunOutcome:
    """Run a stand-in child that runs ``child_code``, then waits; stop the bot while it waits."""
    ready = tmp_path / "ready"
    script = f"{child_code}\nimport pathlib, time\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)"
    monkeypatch.setattr(finetune_runner, "child_command", lambda *, force: [sys.executable, "-c", script])
    settings = load_settings(Settings, telegram_bot_token="1:x", model_dir=tmp_path / "models")
    engine = create_engine(sqlite_database(tmp_path))
    try:
        sessions = session_factory(engine)
        live = LiveModel(
            predictors=load_predictors(settings), sessions=sessions, model_dir=settings.model_dir, uncertain_below=0.5
        )
        runner = FinetuneRunner(settings, live, sessions)
        task = runner.start(force=True)
        assert task is not None
        async with asyncio.timeout(30):
            while not ready.exists():
                await asyncio.sleep(0.05)
        await runner.stop(grace=5)
        return task.result()
    finally:
        await engine.dispose()


def recording(database: Path, version: str, decision: str, started_ago_s: float) -> str:
    """Code that commits a run's row to ``database`` as ``finetune_job._record`` does, the run begun
    ``started_ago_s`` before the code runs."""
    return (
        "import sqlite3\nfrom datetime import UTC, datetime, timedelta\n"
        f"started = (datetime.now(UTC) - timedelta(seconds={started_ago_s})).strftime('%Y-%m-%d %H:%M:%S.%f')\n"
        f"c = sqlite3.connect({str(database)!r})\n"
        "c.execute('INSERT INTO model_versions (version, kind, parent_version, metrics, decision, reason, active,"
        " started_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',"
        f" ({version!r}, 'gru', 'gru-live', '{{\"seconds\": 2.5}}', {decision!r}, 'worse', 0, started, started))\n"
        "c.commit()"
    )


async def test_a_run_stopped_after_it_reported_keeps_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.to_thread(migrate.upgrade, sqlite_database(tmp_path))
    report = RunReport("promoted", "within the allowed drop", "gru-live", "gru-new", seconds=1.0)
    # A child that has committed its promotion and printed its report, then takes its time to exit
    # (tearing torch down is slow), and is stopped by the bot meanwhile.
    outcome = await stopped_while_waiting(tmp_path, monkeypatch, f"print({report.to_json()!r}, flush=True)")
    assert outcome == report  # not "abandoned, the live model is unchanged"
    assert await read_versions(sqlite_database(tmp_path)) == []  # and no abandoned run is recorded beside it


async def test_a_run_stopped_after_it_committed_but_before_it_reported_keeps_its_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = sqlite_database(tmp_path)
    await asyncio.to_thread(migrate.upgrade, database_url)
    child = recording(tmp_path / "bot.db", "gru-new", versions.REJECTED, 0)
    outcome = await stopped_while_waiting(tmp_path, monkeypatch, child)
    assert outcome == RunReport("rejected", "worse", "gru-live", "gru-new", seconds=2.5)
    assert [(run.version, run.decision) for run in await read_versions(database_url)] == [("gru-new", "rejected")]


async def test_a_run_stopped_before_it_committed_is_abandoned_whatever_earlier_runs_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = sqlite_database(tmp_path)
    await asyncio.to_thread(migrate.upgrade, database_url)
    await asyncio.to_thread(exec, recording(tmp_path / "bot.db", "gru-earlier", versions.REJECTED, 60), {})
    outcome = await stopped_while_waiting(tmp_path, monkeypatch, "")
    assert isinstance(outcome, RunFailed)
    recorded = [(run.version, run.decision) for run in await read_versions(database_url)]
    assert recorded[1:] == [("gru-earlier", "rejected")] and recorded[0][1] == versions.ABANDONED
