"""Fixtures that run the real bot Application against the fake Bot API over loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import app as bot_app
from bot.app import build_application
from bot.config import Settings, load_settings
from bot.db import migrate
from bot.db.engine import create_engine, session_factory
from bot.outgoing import RetryingRateLimiter
from bot.service import Predictors
from core.predict import Predictor
from tests.fake_telegram import FakeTelegram


@pytest.fixture(scope="session")
def predictors() -> Predictors:
    """The shipped models, loaded once."""
    return Predictors(gru=Predictor.shipped("gru"), rnn=Predictor.shipped("rnn"))


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    """A started fake Bot API server."""
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


def settings_for(telegram: FakeTelegram, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings pointing at the fake server and an SQLite file in ``tmp_path``."""
    values: dict[str, Any] = {
        "telegram_bot_token": telegram.token,
        "telegram_api_base_url": telegram.base_url,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        "bot_admin_ids": "1",
        "model_dir": tmp_path / "models",
        **overrides,
    }
    return load_settings(Settings, **values)


@pytest.fixture
def settings(telegram: FakeTelegram, tmp_path: Path, database_url: str) -> Settings:
    """Default test settings, once on SQLite and once on PostgreSQL."""
    return settings_for(telegram, tmp_path, database_url=database_url)


@asynccontextmanager
async def running_bot(settings: Settings, predictors: Predictors) -> AsyncIterator[Any]:
    """Migrate, build and start the Application with long polling, as ``nameorigin serve`` does."""
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    # A holder of its own: a test that swaps the live GRU must not change the models other tests see.
    application = build_application(settings, Predictors(gru=predictors.gru, rnn=predictors.rnn))
    async with application:
        assert application.post_init is not None and application.post_shutdown is not None
        await application.post_init(application)
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0.0, timeout=1)
        await application.start()
        try:
            yield application
        finally:
            await application.updater.stop()
            await application.stop()
            await application.post_shutdown(application)  # as serve does: the bot can still send


@pytest.fixture
def group_edits_twenty_times_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each press redraws its message, and a group gets 20 edits a minute: here 20 in 3 s."""
    monkeypatch.setattr(
        bot_app,
        "outgoing_limiter",
        lambda rate: RetryingRateLimiter(overall_max_rate=rate, group_max_rate=20, group_time_period=3),
    )


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a migrated, empty database (each backend)."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()
