"""The bot's side of a fine-tune: how it reads what the child process did when the bot stops meanwhile."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bot import finetune_runner
from bot.app import load_predictors
from bot.config import Settings, load_settings
from bot.db import migrate
from bot.db.engine import create_engine, session_factory
from bot.finetune_job import RunReport
from bot.finetune_runner import FinetuneRunner
from bot.live_model import LiveModel
from tests.bot.verdicts import read_versions
from tests.databases import sqlite_database


async def test_a_run_stopped_after_it_reported_keeps_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = sqlite_database(tmp_path)
    await asyncio.to_thread(migrate.upgrade, database_url)
    report = RunReport("promoted", "within the allowed drop", "gru-live", "gru-new", seconds=1.0)
    reported = tmp_path / "reported"
    # A child that has committed its promotion and printed its report, then takes its time to exit
    # (tearing torch down is slow), and is stopped by the bot meanwhile.
    script = (
        f"import pathlib, time; print({report.to_json()!r}, flush=True); "
        f"pathlib.Path({str(reported)!r}).touch(); time.sleep(60)"
    )
    monkeypatch.setattr(finetune_runner, "child_command", lambda *, force: [sys.executable, "-c", script])
    settings = load_settings(Settings, telegram_bot_token="1:x", model_dir=tmp_path / "models")
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        live = LiveModel(
            predictors=load_predictors(settings), sessions=sessions, model_dir=settings.model_dir, uncertain_below=0.5
        )
        runner = FinetuneRunner(settings, live, sessions)
        task = runner.start(force=True)
        assert task is not None
        async with asyncio.timeout(30):
            while not reported.exists():
                await asyncio.sleep(0.05)
        await runner.stop(grace=5)
        assert task.result() == report  # not "abandoned, the live model is unchanged"
    finally:
        await engine.dispose()
    assert await read_versions(database_url) == []  # and no abandoned run is recorded beside the promotion
