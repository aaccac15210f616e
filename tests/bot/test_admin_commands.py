"""Who may use the admin commands, and where: an admin is a user, in whichever chat they write."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from telegram.constants import ChatType

from bot.admin import AdminHandlers
from bot.admin_views import NOT_ADMIN, STOPPING
from bot.ratelimit import UserRateLimiter
from bot.service import Predictors
from bot.update_log import UPDATE_LOGGER
from tests.bot.conftest import running_bot, settings_for
from tests.bot.test_units import ScriptedRunner
from tests.bot.test_unusual_updates import handled, texts_to
from tests.fake_telegram import FakeTelegram


@pytest.fixture(autouse=True)
def update_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=UPDATE_LOGGER)


async def test_an_admin_is_answered_in_a_group_where_others_are_ignored(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    group = -100920
    async with running_bot(settings_for(telegram, tmp_path), predictors):  # BOT_ADMIN_IDS=1
        telegram.inject_message(5, "/models", chat_id=group)
        await handled(caplog, 1)
        telegram.inject_message(1, "/models", chat_id=group)
        await handled(caplog, 2)
    [reply] = texts_to(telegram, group)
    assert predictors.gru.version in reply and reply != NOT_ADMIN


class Message:
    """The parts of a private message the admin commands read, and the replies they send."""

    def __init__(self, user_id: int) -> None:
        self.chat_id = user_id
        self.chat = type("Chat", (), {"id": user_id, "type": ChatType.PRIVATE})()
        self.replies: list[str] = []

    async def reply_text(self, text: str, **_: Any) -> None:
        self.replies.append(text)


async def test_retrain_while_the_bot_stops_says_so_and_starts_nothing() -> None:
    runner = ScriptedRunner()
    admin = AdminHandlers(
        runner=runner,  # type: ignore[arg-type]
        live=None,  # type: ignore[arg-type]
        admin_ids=frozenset({1}),
        limiter=UserRateLimiter(20),
    )
    runner.stopping = True
    message = Message(1)
    update = type("Update", (), {"effective_user": type("User", (), {"id": 1})(), "effective_message": message})()
    await admin.retrain(update, type("Context", (), {"bot": None})())
    assert message.replies == [STOPPING] and runner.started == []
