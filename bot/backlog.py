"""How many updates the bot holds unanswered; long polling fetches no more while that is too many.

python-telegram-bot fetches updates as fast as Telegram hands them over and makes each a task at once. Above what
the bot can answer (in production, Telegram's 30 messages a second), those tasks pile up in memory for as long as a
burst lasts: a viral minute could hold tens of thousands. Updates not yet fetched wait at Telegram instead, which
keeps them for 24 hours, costing the bot nothing; they are answered in the same order, no later than before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from bot.throttled_log import ThrottledWarning

logger = logging.getLogger(__name__)

BACKLOG_LIMIT = 1000  # updates fetched and not yet answered; one more getUpdates adds at most 100 to them
FETCH_MAX = 100  # updates one getUpdates brings at most
# Stopping confirms every fetched update to Telegram, then answers them at the outgoing rate at best: within
# docker-compose.yml's 30 s stop_grace_period, less the 10 s post_shutdown brings pressed messages up to date.
STOP_DRAIN_S = 15.0
# A full backlog is answered at the outgoing rate within seconds (350 at 30 a second: 12 s). One from which no update
# has left for this long is stuck (a handler hung on a lock, a database that never answers): /health says so.
STALL_SHOWN_S = 120.0
STALL_LOGGED_EVERY_S = 60.0


def limit_for(messages_per_second: float) -> int:
    """The backlog limit whose updates, with one more getUpdates' worth, a stopping bot answers in ``STOP_DRAIN_S``
    at ``messages_per_second`` (0: no outgoing limit) replies: 350 at Telegram's 30 a second."""
    if messages_per_second <= 0:
        return BACKLOG_LIMIT
    return max(1, min(BACKLOG_LIMIT, int(messages_per_second * STOP_DRAIN_S) - FETCH_MAX))


class UpdateBacklog:
    """The tasks of updates being handled, counted as they start and end (a task's end is never missed)."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit  # see ``limit_for``
        self._clock = clock
        self._pending = 0
        self._room = asyncio.Event()
        self._room.set()
        self._moved_at = clock()  # when it last filled up or an update left it
        self._warn = ThrottledWarning(logger, "%d updates are waiting to be answered; fetching more once fewer are")

    @property
    def pending(self) -> int:
        """Updates handed to a task and not yet done."""
        return self._pending

    def track(self, task: asyncio.Task[Any]) -> None:
        """Count ``task``, an update's, until it ends."""
        self._pending += 1
        if self._pending >= self.limit and self._room.is_set():
            self._room.clear()
            self._moved_at = self._clock()
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._pending -= 1
        self._moved_at = self._clock()
        if self._pending < self.limit:
            self._room.set()

    def stalled(self) -> str | None:
        """Why long polling fetches nothing, when the backlog has been full with no update answered for
        ``STALL_SHOWN_S``; otherwise None."""
        if self._room.is_set():
            return None
        seconds = self._clock() - self._moved_at
        if seconds < STALL_SHOWN_S:
            return None
        return f"{self._pending} updates waiting and none answered for {seconds:.0f} s: fetching no more"

    async def room(self) -> None:
        """Return once fewer than ``limit`` updates are pending (at once when they are); while none leaves the
        backlog for ``STALL_SHOWN_S`` and more, say so in the log once a minute."""
        if not self._room.is_set():
            self._warn(self._pending)
        while not self._room.is_set():
            try:
                # Not asyncio.wait_for: on Python 3.11, a cancel (the updater stopping) that comes as an update
                # leaves would be swallowed, and the getUpdates it stopped would go on to long-poll.
                async with asyncio.timeout(STALL_LOGGED_EVERY_S):
                    await self._room.wait()
            except TimeoutError:
                stalled = self.stalled()
                if stalled is not None:
                    logger.warning("long polling waits: %s", stalled)
