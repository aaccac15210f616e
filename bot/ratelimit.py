"""Per-user limit on incoming guesses (a sliding window in memory)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

# Past this many users tracked, users idle for a whole window are forgotten.
FORGET_IDLE_ABOVE = 10_000


class UserRateLimiter:
    """Allows at most ``limit`` events per user in any ``window`` seconds."""

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: dict[int, deque[float]] = {}
        self._warned: dict[int, float] = {}  # when each user was last told they are over the limit
        self._next_sweep = float("-inf")

    def allow(self, user_id: int) -> bool:
        """Record an event for ``user_id`` and say whether it is within the limit."""
        now = self._clock()
        events = self._events.setdefault(user_id, deque())
        while events and now - events[0] >= self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        if len(self._events) > FORGET_IDLE_ABOVE and now >= self._next_sweep:
            self._forget_idle(now)
        return True

    def should_warn(self, user_id: int) -> bool:
        """Whether to tell ``user_id`` that an event was refused: once per window, not once per refusal.

        Replying to every refused message would let one user flood the chat, and the bot's outgoing
        budget, with notices.
        """
        now = self._clock()
        last = self._warned.get(user_id)
        if last is not None and now - last < self.window:
            return False
        self._warned[user_id] = now
        return True

    def _forget_idle(self, now: float) -> None:
        # Bounded memory: drop users whose window has passed. At most one sweep per window: with more
        # active users than the threshold a sweep frees nothing, and one per event would scan them all
        # on the event loop for every message.
        self._next_sweep = now + self.window
        idle = [user for user, events in self._events.items() if not events or now - events[-1] >= self.window]
        for user in idle:
            del self._events[user]
        for user in [user for user, warned in self._warned.items() if now - warned >= self.window]:
            del self._warned[user]
