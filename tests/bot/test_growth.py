"""A bot that runs for months: what it keeps in memory must not grow with the number of chats and users it met."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from bot import backlog as backlog_module
from bot.config import Settings
from bot.db import migrate
from bot.db.engine import create_engine, session_factory
from bot.handlers import Handlers
from bot.live_model import RolledBack
from bot.service import Predictors
from core.models import GRUClassifier
from core.predict import Predictor
from tests.bot.conftest import running_bot, settings_for
from tests.bot.test_versions import live_after
from tests.fake_telegram import FakeTelegram

USERS = 40
GROUP = -500
MEMBERS = 8  # a group gets 20 messages a minute


def _handlers(application: object) -> Handlers:
    for group in application.handlers.values():  # type: ignore[attr-defined]
        for handler in group:
            owner = getattr(handler.callback, "__self__", None)
            if isinstance(owner, Handlers):
                return owner
    raise AssertionError("no Handlers among the application's callbacks")


async def test_nothing_is_kept_per_chat_or_user_once_their_updates_are_done(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    settings = settings_for(telegram, tmp_path)  # what is kept in memory is the same on either database
    async with running_bot(settings, predictors) as application:
        for user in range(1000, 1000 + USERS):  # private chats: a guess, then a press on its answer
            telegram.inject_message(user, "Nakamura")
        for user in range(2000, 2000 + MEMBERS):  # members of one group
            telegram.inject_message(user, "/help", chat_id=GROUP)
        await telegram.wait_for_count("sendMessage", USERS + MEMBERS)
        for user in range(1000, 1000 + USERS):
            message_id = telegram.last_bot_message_id(user)
            keyboard = telegram.messages[(user, message_id)]["reply_markup"]["inline_keyboard"]
            telegram.inject_callback(user, user, message_id, keyboard[0][0]["callback_data"])
        await telegram.wait_for_count("editMessageText", USERS)
        handlers = _handlers(application)
        for _ in range(100):  # the last redraw's worker ends just after its edit was answered
            if not handlers.redraws._workers:
                break
            await asyncio.sleep(0.05)

        # Without persistence, python-telegram-bot's marks for it were never flushed: every chat and user stayed.
        assert application.persistence is None
        assert len(application._chat_ids_to_be_updated_in_persistence) == 0
        assert len(application._user_ids_to_be_updated_in_persistence) == 0
        assert len(handlers.presses) == 0
        assert handlers.redraws.waiting() == 0 and not handlers.redraws._workers
        processor = application.update_processor
        assert not processor._in_progress and not processor._member_in_progress
        assert not handlers.service._guessing


async def test_long_polling_fetches_no_more_while_too_many_updates_wait_to_be_answered(
    telegram: FakeTelegram,
    tmp_path: Path,
    predictors: Predictors,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Replies go out at 10 a second, updates come at 100: past 8 waiting, the rest wait at Telegram."""
    monkeypatch.setattr(backlog_module, "BACKLOG_LIMIT", 8)
    fetched_ahead: list[int] = []  # at each getUpdates: updates fetched before it, less the replies sent
    first_id: list[int] = []
    get_updates = telegram._api_getUpdates

    async def watched(params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset", 0) or 0)
        if first_id and offset:
            fetched_ahead.append(offset - first_id[0] - len(telegram.sent("sendMessage")))
        return await get_updates(params)

    monkeypatch.setattr(telegram, "_api_getUpdates", watched)
    settings = settings_for(telegram, tmp_path, telegram_messages_per_second=10)
    with caplog.at_level(logging.WARNING, logger="bot.backlog"):
        await run_burst(telegram, settings, predictors, first_id)

    assert max(fetched_ahead) < 8, fetched_ahead  # without the wait, 26 of the 40 at once
    assert re.search(r"\b\d+ updates are waiting to be answered; fetching more once fewer are", caplog.text)
    assert sorted(int(call.params["chat_id"]) for call in telegram.sent("sendMessage")) == list(range(3000, 3040))


async def run_burst(telegram: FakeTelegram, settings: Settings, predictors: Predictors, first_id: list[int]) -> None:
    """40 users send /help, one every 10 ms; returns once all 40 are answered."""
    async with running_bot(settings, predictors):
        for user in range(3000, 3040):
            update_id = telegram.inject_message(user, "/help")
            first_id[:] = first_id or [update_id]
            await asyncio.sleep(0.01)
        await telegram.wait_for_count("sendMessage", 40, timeout=30)


async def test_swapping_models_back_and_forth_keeps_no_replaced_model_alive(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"  # a swap's memory is the same on either database
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    try:
        shipped = Predictor.shipped("gru").version
        live = await live_after(session_factory(engine), tmp_path / "models", [("gru-ft-1", shipped, True)])

        def models_alive() -> int:
            gc.collect()
            return sum(type(thing) is GRUClassifier for thing in gc.get_objects())

        alive = models_alive()
        for version in (shipped, "gru-ft-1") * 20:  # /rollback to one, then the other: 40 loads and swaps
            assert isinstance(await live.rollback(version), RolledBack)
        assert models_alive() == alive
    finally:
        await engine.dispose()
