"""Warnings that outsiders can trigger, logged at most once per interval with a count of those left out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

DEFAULT_INTERVAL_S = 60.0


class ThrottledWarning:
    """Logs ``message % args`` as a warning at most once per ``interval``: whoever can trigger it (a stranger at the
    webhook port, one user flooding a group) must not be able to write the log as fast as they can send."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        interval: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._message = message
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._unlogged = 0

    def __call__(self, *args: object) -> None:
        """Note one occurrence; log it unless one was logged within the interval."""
        now = self._clock()
        if now < self._next:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more since the last such line)" if self._unlogged else ""
        self._logger.warning(self._message + "%s", *args, more)
        self._next, self._unlogged = now + self._interval, 0
