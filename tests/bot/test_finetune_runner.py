"""The bot's side of a fine-tune: how it reads what the child process did when the bot stops meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bot import finetune_runner
from bot.app import load_predictors
from bot.config import Settings, load_settings
from bot.db import migrate, versions
from bot.db.engine import create_engine, session_factory
from bot.finetune_runner import FinetuneRunner, RunFailed, RunOutcome
from bot.live_model import LiveModel
from bot.run_report import RunReport
from tests.bot.verdicts import read_versions
from tests.databases import sqlite_database


@asynccontextmanager
async def runner_with_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, child_code: str, *, migrated: bool = True
) -> AsyncIterator[FinetuneRunner]:
    """A runner whose fine-tune child is a stand-in that runs ``child_code``, on an SQLite file in ``tmp_path``."""
    monkeypatch.setattr(finetune_runner, "child_command", lambda *, force: [sys.executable, "-c", child_code])
    if migrated:
        await asyncio.to_thread(migrate.upgrade, sqlite_database(tmp_path))
    settings = load_settings(Settings, telegram_bot_token="1:x", model_dir=tmp_path / "models")
    engine = create_engine(sqlite_database(tmp_path))
    try:
        sessions = session_factory(engine)
        live = LiveModel(
            predictors=load_predictors(settings), sessions=sessions, model_dir=settings.model_dir, uncertain_below=0.5
        )
        yield FinetuneRunner(settings, live, sessions)
    finally:
        await engine.dispose()


async def stopped_while_waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, child_code: str) -> RunOutcome:
    """Run a stand-in child that runs ``child_code``, then waits; stop the bot while it waits."""
    ready = tmp_path / "ready"
    script = f"{child_code}\nimport pathlib, time\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)"
    async with runner_with_child(tmp_path, monkeypatch, script, migrated=False) as runner:
        task = runner.start(force=True)
        assert task is not None
        async with asyncio.timeout(30):
            while not ready.exists():
                await asyncio.sleep(0.05)
        await runner.stop(grace=5)
        return task.result()


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


# -3600: the earlier run began an hour "in the future", and the clock was set back since.
@pytest.mark.parametrize("earlier_run_began_s_ago", [60, -3600])
async def test_a_run_stopped_before_it_committed_is_abandoned_whatever_earlier_runs_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, earlier_run_began_s_ago: float
) -> None:
    database_url = sqlite_database(tmp_path)
    await asyncio.to_thread(migrate.upgrade, database_url)
    earlier = recording(tmp_path / "bot.db", "gru-earlier", versions.REJECTED, earlier_run_began_s_ago)
    await asyncio.to_thread(exec, earlier, {})
    outcome = await stopped_while_waiting(tmp_path, monkeypatch, "")
    assert isinstance(outcome, RunFailed)
    recorded = [(run.version, run.decision) for run in await read_versions(database_url)]
    assert recorded[1:] == [("gru-earlier", "rejected")] and recorded[0][1] == versions.ABANDONED


async def outcome_of(runner: FinetuneRunner) -> RunOutcome:
    task = runner.start(force=True)
    assert task is not None
    async with asyncio.timeout(30):
        return await task


@pytest.mark.parametrize("stdout", ["", "{}", "[1]", '{"status": "promoted", "unexpected": 1}'])
async def test_a_child_that_exits_cleanly_without_a_readable_report_is_a_failed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdout: str
) -> None:
    async with runner_with_child(tmp_path, monkeypatch, f"print({stdout!r}, end='')") as runner:
        outcome = await outcome_of(runner)
    assert isinstance(outcome, RunFailed)
    [failed] = await read_versions(sqlite_database(tmp_path))
    assert failed.decision == versions.FAILED and failed.started_at is not None


async def test_a_failed_run_is_recorded_against_the_live_model_with_its_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = "import sys; sys.exit('nameorigin finetune: error: cannot fine-tune: no disk')"
    async with runner_with_child(tmp_path, monkeypatch, code) as runner:
        outcome = await outcome_of(runner)
        live_version = runner._live.version
    message = "the fine-tune process exited with status 1: nameorigin finetune: error: cannot fine-tune: no disk"
    assert outcome == RunFailed(message)
    [failed] = await read_versions(sqlite_database(tmp_path))
    assert (failed.decision, failed.reason, failed.parent_version) == (versions.FAILED, message, live_version)


async def test_a_failure_the_database_cannot_record_is_still_an_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with runner_with_child(tmp_path, monkeypatch, "raise SystemExit(3)", migrated=False) as runner:
        assert await outcome_of(runner) == RunFailed("the fine-tune process exited with status 3")


async def test_a_run_whose_start_the_database_could_not_mark_claims_no_earlier_runs_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unreadable as the run began (then it was back): nothing tells this run's rows from earlier ones.
    database_url = sqlite_database(tmp_path)
    await asyncio.to_thread(migrate.upgrade, database_url)
    await asyncio.to_thread(exec, recording(tmp_path / "bot.db", "gru-earlier", versions.PROMOTED, 60), {})

    def unreadable_once(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "max(model_versions.id)" in statement and not failed:
            failed.append(statement)
            raise sqlite3.OperationalError("database is locked")

    failed: list[str] = []
    event.listen(Engine, "before_cursor_execute", unreadable_once)
    try:
        async with runner_with_child(tmp_path, monkeypatch, "raise SystemExit(1)") as runner:
            outcome = await outcome_of(runner)
    finally:
        event.remove(Engine, "before_cursor_execute", unreadable_once)
    assert failed and outcome == RunFailed("the fine-tune process exited with status 1")


async def test_a_promotion_the_bot_cannot_switch_to_at_once_is_still_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = RunReport("promoted", "within the allowed drop", "gru-live", "gru-new", seconds=1.0)
    async with runner_with_child(tmp_path, monkeypatch, f"print({report.to_json()!r})") as runner:

        async def database_down(**kwargs: object) -> str:
            raise ConnectionError("the database went away")

        monkeypatch.setattr(runner._live, "sync", database_down)
        assert await outcome_of(runner) == report  # the periodic refresh switches later


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready = tmp_path / "ready"
    code = (
        "import pathlib, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).touch()\ntime.sleep(30)"
    )
    async with runner_with_child(tmp_path, monkeypatch, code) as runner:
        task = runner.start(force=True)
        assert task is not None
        async with asyncio.timeout(20):
            while not ready.exists():
                await asyncio.sleep(0.05)
        try:
            async with asyncio.timeout(10):
                await runner.stop(grace=0.5)
        finally:
            if runner._process is not None and runner._process.returncode is None:
                runner._process.kill()  # only when the test fails: leave no child behind
        outcome = task.result()
        again = runner.start(force=True)
        if again is not None:  # only when the test fails: end that run too
            await runner.stop(grace=0.1)
    assert isinstance(outcome, RunFailed) and "SIGKILL" in outcome.message
    assert again is None  # a stopping bot starts no new run
