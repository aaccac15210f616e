"""Bringing messages up to date after button presses, apart from the presses themselves.

A press is stored and answered at once; the edit that shows it waits for its chat's share of Telegram's
limits (20 messages or edits a minute in a group). Awaited in the press's own update, that wait held one of
the bot's update slots per press, and a message pressed ten times was edited ten times, each edit already
out of date when the next press came.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

from bot.throttled_log import ThrottledWarning

logger = logging.getLogger(__name__)

Redraw = Callable[[], Awaitable[None]]

# Messages of one chat waiting for a redraw. Each is drawn once however often it is pressed meanwhile, so only
# presses on this many different messages, faster than the chat's edit limit, can reach it; past it a message
# keeps showing its earlier state (what the press stored is kept, and its user was told).
MAX_WAITING_PER_CHAT = 256


class MessageRedraws:
    """Per chat, one task that redraws its messages in the order they were first pressed; a message waiting
    for its turn is drawn as its latest press left it."""

    def __init__(self, max_waiting_per_chat: int = MAX_WAITING_PER_CHAT) -> None:
        self.max_waiting_per_chat = max_waiting_per_chat
        # chat -> message -> its latest whole redraw, and a later one of its keyboard alone
        self._waiting: dict[int, dict[Hashable, tuple[Redraw | None, Redraw | None]]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._drawing: dict[int, Hashable] = {}  # chat -> the message whose redraw is under way
        self._dropped = ThrottledWarning(logger, "a message was left as it was: its chat has too many redraws waiting")

    def request(self, chat_id: int, message: Hashable, redraw: Redraw, *, keyboard_only: bool = False) -> None:
        """Have ``redraw`` bring ``message`` of ``chat_id`` up to date, in place of any redraw of it still waiting.

        With ``keyboard_only`` (it redraws the buttons alone) it replaces only such a redraw: a whole one still
        waiting (a verdict's text) is drawn first.
        """
        waiting = self._waiting.setdefault(chat_id, {})
        if message not in waiting and len(waiting) >= self.max_waiting_per_chat:
            self._dropped()
            return
        whole, _keyboard = waiting.get(message, (None, None))
        # A newer redraw keeps the older one's place in line.
        waiting[message] = (whole, redraw) if keyboard_only else (redraw, None)
        if chat_id not in self._workers:
            self._workers[chat_id] = asyncio.create_task(self._redraw_in_turn(chat_id), name=f"redraws:{chat_id}")

    def pending(self, chat_id: int, message: Hashable) -> bool:
        """Whether a redraw of ``message`` waits or is under way: it may not stay as Telegram last showed it."""
        return message in self._waiting.get(chat_id, {}) or self._drawing.get(chat_id) == message

    def waiting(self) -> int:
        """How many messages wait for a redraw, in all chats."""
        return sum(len(messages) for messages in self._waiting.values())

    async def _redraw_in_turn(self, chat_id: int) -> None:
        try:
            while waiting := self._waiting.get(chat_id):
                message = next(iter(waiting))
                redraws = waiting.pop(message)
                self._drawing[chat_id] = message
                for redraw in filter(None, redraws):
                    try:
                        await redraw()
                    except Exception:  # the redraws catch Telegram's refusals; anything else is a bug, reported
                        logger.exception("could not redraw a message")
        finally:
            self._drawing.pop(chat_id, None)
            if not self._waiting.get(chat_id):
                self._waiting.pop(chat_id, None)
            del self._workers[chat_id]

    async def finish(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the waiting redraws (when the bot stops), then drop the rest."""
        workers = list(self._workers.values())
        if not workers:
            return
        _done, late = await asyncio.wait(workers, timeout=timeout)
        if late:
            logger.warning("stopping before %d messages were brought up to date", self.waiting() + len(late))
            for worker in late:
                worker.cancel()
            await asyncio.gather(*late, return_exceptions=True)
