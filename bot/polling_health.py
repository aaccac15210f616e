"""Whether long polling hears Telegram: every getUpdates call is watched, and /health reports when it fails.

python-telegram-bot retries a failing getUpdates forever, logging a traceback each time (and nothing at all
for a timeout). Meanwhile the bot hears no one, or, with a second process polling with the same token, only
some of its users, and /health used to say 200 throughout.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from telegram.error import TelegramError
from telegram.request import HTTPXRequest, RequestData

from bot.backlog import UpdateBacklog
from bot.throttled_log import ThrottledWarning

logger = logging.getLogger(__name__)

# A second process polling with the token makes both fail and succeed by turns, for as long as both run: each
# success says nothing about the next minute, so a conflict is reported for this long after the last one seen.
CONFLICT_SHOWN_S = 120.0

# Failed calls in a row before /health reports them: one alone is a blip (a 502, a timeout) that the next call,
# a long poll of up to 10 s, would otherwise keep reported for its whole length.
FAILED_CALLS_SHOWN = 2

SECOND_POLLER = "another process is polling Telegram with this bot's token, and each hears only some of the users"


class PollingHealth:
    """The state of long polling as its getUpdates calls showed it; ``problem()`` says what /health reports."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, backlog: UpdateBacklog | None = None) -> None:
        self._clock = clock
        self._backlog = backlog  # full and stuck, it keeps polling from fetching as surely as a failing call
        self._failing_since: float | None = None  # first failure since the last success
        self._streak = 0  # failed calls since the last success
        self._troubled_since: float | None = None  # first failure since polling was last said to work
        self._failures = 0  # failed calls since then
        self._last_reason = ""
        self._last_conflict: float | None = None
        self._warn = ThrottledWarning(logger, "long polling failed: %s", clock=clock)

    def failed(self, reason: str, *, conflict: bool = False) -> None:
        """Note a getUpdates call that failed for ``reason`` (a ``conflict``: another poller), and log it
        at most once a minute."""
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        if self._troubled_since is None:
            self._troubled_since = now
        self._streak += 1
        self._failures += 1
        self._last_reason = reason
        if conflict:
            self._last_conflict = now
            self._warn(f"{SECOND_POLLER} ({reason})")
        else:
            self._warn(f"{reason}; retrying")

    def succeeded(self) -> None:
        """Note a getUpdates call that Telegram answered."""
        self._failing_since, self._streak = None, 0
        # Not while a second poller is still reported: between its conflicts, calls succeed by turns.
        if self._troubled_since is not None and self.problem() is None:
            seconds = self._clock() - self._troubled_since
            logger.info("long polling works again after %.0f s and %d failed calls", seconds, self._failures)
            self._troubled_since, self._failures = None, 0

    def problem(self) -> str | None:
        """Why the bot may not hear its users, or ``None``: a recent conflict, getUpdates failing since, or a
        backlog that nothing leaves.

        A lone failed call is not reported: the next call, a long poll, may take its full timeout to succeed.
        """
        stalled = self._backlog.stalled() if self._backlog is not None else None
        if stalled is not None:
            return stalled
        now = self._clock()
        if self._last_conflict is not None and now - self._last_conflict <= CONFLICT_SHOWN_S:
            return f"{SECOND_POLLER} (last seen {now - self._last_conflict:.0f} s ago)"
        if self._failing_since is not None and self._streak >= FAILED_CALLS_SHOWN:
            return f"getUpdates failing for {now - self._failing_since:.0f} s: {self._last_reason}"
        return None


def _is_bot_api_answer(payload: bytes) -> bool:
    """Whether a successful HTTP answer is the Bot API's: a proxy's or a captive portal's own page is not."""
    try:
        answer = json.loads(payload.decode("utf-8", "replace"))  # as python-telegram-bot reads it
    except ValueError:
        return False
    return isinstance(answer, dict) and "result" in answer


def _description(payload: bytes) -> str:
    """Telegram's own words for a failed call, from its JSON answer."""
    try:
        description = json.loads(payload).get("description")
    except (ValueError, AttributeError):  # not JSON, or not an object: a proxy's error page
        return "no description"
    return description if isinstance(description, str) else "no description"


def _long_poll(request_data: RequestData | None) -> bool:
    """Whether a getUpdates call waits for updates: the polling loop's do, the one made at shutdown to confirm what
    was fetched (``timeout=0``) does not, and must not wait for the backlog either: stopping would wait on it."""
    timeout = request_data.json_parameters.get("timeout") if request_data is not None else None
    return timeout not in (None, "0")


class WatchedGetUpdatesRequest(HTTPXRequest):
    """The connection python-telegram-bot sends getUpdates through, telling ``health`` how each call went.

    Configured as the library's own default for getUpdates (one connection, its timeouts), so only the
    watching differs. It sees timeouts too, which the library's error callback never receives.
    """

    def __init__(self, health: PollingHealth, backlog: UpdateBacklog | None = None) -> None:
        super().__init__(connection_pool_size=1)
        self._health = health
        self._backlog = backlog

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        """Send the call, once the backlog has room for what it may bring; note whether Telegram answered it."""
        request_data = kwargs.get("request_data", args[2] if len(args) > 2 else None)  # (url, method, request_data)
        if self._backlog is not None and _long_poll(request_data):
            await self._backlog.room()
        try:
            code, payload = await super().do_request(*args, **kwargs)
        except TelegramError as error:  # unreachable, or timed out
            self._health.failed(f"{type(error).__name__}: {error.message}")
            raise
        if HTTPStatus.OK <= code <= 299 and _is_bot_api_answer(payload):
            self._health.succeeded()
        elif HTTPStatus.OK <= code <= 299:  # the library fails on it, and tells only its error callback
            self._health.failed(f"HTTP {code}: not an answer of the Bot API")
        else:
            self._health.failed(f"HTTP {code}: {_description(payload)}", conflict=code == HTTPStatus.CONFLICT)
        return code, payload
