"""The bot's outgoing Bot API requests: a rate limit, and retries only where a retry cannot send twice."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import httpx
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut
from telegram.ext import AIORateLimiter

logger = logging.getLogger(__name__)

# Methods whose repetition the user would see: a second message, a second copy.
_DELIVERING = ("send", "forward", "copy")
# Failures before the request left this machine: no connection, or none free in the pool.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def may_retry(endpoint: str, error: NetworkError) -> bool:
    """Whether ``endpoint``'s request that failed with ``error`` can be sent again without acting twice.

    A request that never left (no connection, none free in the pool) can always be sent again. Any
    other failure may come after Telegram acted: a dropped connection, or an error status from Telegram
    or a proxy in front of it (a 504 can follow a delivered message). Reading or editing again is
    harmless then, so those are retried; sending again could show the user a message twice, which
    cannot be taken back, while a lost reply gets an apology and can be asked for again. A time-out
    is not retried: the request may still be under way.
    """
    if isinstance(error, BadRequest):  # Telegram refused the request itself: the same again fails the same
        return False
    if isinstance(error.__cause__, _NEVER_SENT):
        return True
    if isinstance(error, TimedOut):  # a read or write time-out
        return False
    return not endpoint.startswith(_DELIVERING)


Request = Callable[..., Coroutine[Any, Any, Any]]


def retry_after_seconds(error: RetryAfter) -> float:
    """How long Telegram asked to wait, whichever type (int or timedelta) this PTB version gives it in."""
    value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class _FloodWait(Exception):
    """A 429 carried past ``AIORateLimiter``, whose own handling would pause every request of the bot."""

    def __init__(self, error: RetryAfter) -> None:
        super().__init__(str(error))
        self.error = error


class FloodWaits:
    """The chats Telegram asked to wait (429), and until when; requests to other chats go on meanwhile."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    def block(self, chat: object, seconds: float) -> None:
        """Hold back every request to ``chat`` for ``seconds``."""
        now = self._clock()
        self._until = {key: until for key, until in self._until.items() if until > now}  # forget waits that ended
        self._until[str(chat)] = max(self._until.get(str(chat), now), now + seconds)

    async def wait_for(self, chat: object) -> None:
        """Return once ``chat`` may be sent to (at once for a chat that was not asked to wait)."""
        while (remaining := self._until.get(str(chat), 0.0) - self._clock()) > 0:
            await asyncio.sleep(remaining)


def _surfacing_flood_waits(callback: Request, waits: FloodWaits, chat: object) -> Request:
    async def call(*args: Any, **kwargs: Any) -> Any:
        # Again here, after the limits let it through: a 429 to its chat may have come while it queued.
        await waits.wait_for(chat)
        try:
            return await callback(*args, **kwargs)
        except RetryAfter as exc:
            raise _FloodWait(exc) from exc

    return call


class RetryingRateLimiter(AIORateLimiter):
    """``AIORateLimiter``'s outgoing limits, with retries: after a 429, once its chat's wait is over; after the
    failures ``may_retry`` allows, with back-off.

    ``AIORateLimiter``'s own 429 handling pauses every request of the bot, while Telegram's flood limits are
    mostly per chat (a group's 20 messages a minute): one busy group would hold up every user's replies.
    Here only requests to that chat wait, and each retry goes through the limits again.
    """

    def __init__(
        self, *, flood_retries: int = 3, server_error_retries: int = 3, backoff: float = 0.5, **kwargs: Any
    ) -> None:
        super().__init__(max_retries=0, **kwargs)  # it never sees a 429: _surfacing_flood_waits
        self._flood_retries = flood_retries
        self._server_error_retries = server_error_retries
        self._backoff = backoff
        self._flood_waits = FloodWaits()

    async def process_request(
        self,
        callback: Any,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        """Send the request once its chat may be sent to; retry after a 429 and the failures ``may_retry`` allows."""
        chat = data.get("chat_id")
        retries = rate_limit_args or self._flood_retries
        for attempt in range(retries + 1):
            await self._flood_waits.wait_for(chat)
            try:
                surfacing = _surfacing_flood_waits(callback, self._flood_waits, chat)
                return await self._send(surfacing, args, kwargs, endpoint, data)
            except _FloodWait as wait:
                seconds = retry_after_seconds(wait.error) + 0.1
                if chat is not None:  # whether or not this one gives up, the chat's next requests must wait
                    self._flood_waits.block(chat, seconds)
                if attempt == retries:
                    raise wait.error from None
                logger.info("Telegram asked %s to wait %.1f s (flood control)", endpoint, seconds)
                if chat is None:  # no chat to hold back: this request alone waits
                    await asyncio.sleep(seconds)
        raise AssertionError("unreachable")

    async def _send(
        self, callback: Request, args: Any, kwargs: dict[str, Any], endpoint: str, data: dict[str, Any]
    ) -> Any:
        for attempt in range(self._server_error_retries + 1):
            try:
                return await super().process_request(callback, args, kwargs, endpoint, data, None)
            except NetworkError as exc:
                if attempt == self._server_error_retries or not may_retry(endpoint, exc):
                    raise
                delay = self._backoff * 2**attempt
                logger.warning("Telegram request %s failed (%s); retrying in %.1fs", endpoint, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")


def outgoing_limiter(messages_per_second: float, max_retries: int = 3) -> RetryingRateLimiter:
    """The limiter for the whole bot's outgoing requests at ``messages_per_second`` (0: no limit).

    ``AIORateLimiter`` refuses every request when its rate per period is below one message, so a rate
    under 1/s becomes one message per ``1 / rate`` seconds.
    """
    if 0 < messages_per_second < 1:
        return RetryingRateLimiter(
            flood_retries=max_retries, overall_max_rate=1, overall_time_period=1 / messages_per_second
        )
    return RetryingRateLimiter(flood_retries=max_retries, overall_max_rate=messages_per_second)
