"""A bot that runs for months: what it keeps in memory must not grow with the number of chats and users it met."""

from __future__ import annotations

import asyncio

from bot.config import Settings
from bot.handlers import Handlers
from bot.service import Predictors
from tests.bot.conftest import running_bot
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
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
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
