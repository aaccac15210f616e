"""How many updates the bot handles at once: in all, from any one chat, and from one member of a chat."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Coroutine
from typing import Any

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import BaseUpdateProcessor

from bot.throttled_log import ThrottledWarning

logger = logging.getLogger(__name__)

MAX_CONCURRENT_UPDATES = 256  # python-telegram-bot's default for concurrent_updates(True)
# A chat's updates beyond this many in progress are dropped. Replies wait for their chat's outgoing budget
# (a group's 20 messages or edits a minute) while holding one of the slots above: a group asking faster than
# that would otherwise fill every slot, and no one else's update would be handled. (Button presses no longer
# wait for their message's redraw, bot/redraws.py, but once held a slot each for it.)
MAX_UPDATES_PER_CHAT = 32
# And of one user's in one chat: else one member sending faster than the group's replies go out fills the
# chat's 32, and the bot no longer answers anyone else in that group.
MAX_UPDATES_PER_MEMBER = 4
# The alert answering a dropped press: unanswered, its button would spin, and its user never learn that the
# verdict was not stored. answerCallbackQuery names no chat, so it waits for no chat's outgoing budget.
CHAT_BUSY = "This chat is busier than I can keep up with: your press was not recorded. Please press again in a minute."


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Handles up to ``max_concurrent_updates`` updates at once, at most ``per_chat`` of them from one chat and
    ``per_member`` from one user in one chat."""

    def __init__(
        self,
        max_concurrent_updates: int = MAX_CONCURRENT_UPDATES,
        per_chat: int = MAX_UPDATES_PER_CHAT,
        per_member: int = MAX_UPDATES_PER_MEMBER,
    ) -> None:
        super().__init__(max_concurrent_updates)
        self.per_chat = per_chat
        self.per_member = per_member
        self._in_progress: Counter[int] = Counter()
        self._member_in_progress: Counter[tuple[int, int]] = Counter()
        self._dropped = ThrottledWarning(
            logger, "dropped an update: its chat, or its sender there, has too many in progress"
        )

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Await ``coroutine``, unless its chat, or its sender in that group, has too many updates in progress."""
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        user = update.effective_user if isinstance(update, Update) else None
        # In a private chat the sender is the chat: their own flood holds up only themselves.
        member = (chat.id, user.id) if user is not None and user.id != chat.id else None
        if self._in_progress[chat.id] >= self.per_chat or (
            member is not None and self._member_in_progress[member] >= self.per_member
        ):
            await self._drop(update, coroutine)
            return
        self._in_progress[chat.id] += 1
        if member is not None:
            self._member_in_progress[member] += 1
        try:
            await coroutine
        finally:
            _release(self._in_progress, chat.id)
            if member is not None:
                _release(self._member_in_progress, member)

    async def _drop(self, update: object, coroutine: Awaitable[Any]) -> None:
        if isinstance(coroutine, Coroutine):
            coroutine.close()  # never started: no "coroutine was never awaited" warning
        self._dropped()  # at most a line a minute: the flood must not reach the log too
        if isinstance(update, Update) and update.callback_query is not None:
            try:
                await update.callback_query.answer(CHAT_BUSY, show_alert=True)
            except (TelegramError, RuntimeError) as exc:  # too late, Telegram out of reach, or no bot attached
                logger.info("could not answer a dropped press: %s", exc)

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""


def _release(in_progress: Counter[Any], key: object) -> None:
    in_progress[key] -= 1
    if not in_progress[key]:
        del in_progress[key]
