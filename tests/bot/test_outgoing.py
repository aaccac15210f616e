"""Which failed Bot API requests the bot sends again: only those a retry cannot carry out twice."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

from bot import outgoing
from bot.outgoing import may_retry, outgoing_limiter


def failure(kind: type[NetworkError], cause: Exception | None) -> NetworkError:
    """A PTB error raised ``from`` the transport's ``cause``, as python-telegram-bot raises them."""
    error = kind("failed")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("endpoint", "error", "retried"),
    [
        ("sendMessage", failure(NetworkError, httpx.ConnectError("refused")), True),
        ("sendMessage", failure(TimedOut, httpx.ConnectTimeout("slow to connect")), True),
        ("sendMessage", failure(TimedOut, httpx.PoolTimeout("no free connection")), True),
        ("sendMessage", failure(NetworkError, None), False),  # an error status: a 504 may follow a delivery
        ("editMessageText", failure(NetworkError, None), True),  # Telegram answered 502 Bad Gateway
        ("sendMessage", failure(NetworkError, ValueError("Unknown error in HTTP implementation")), False),
        ("sendMessage", failure(TimedOut, httpx.ReadTimeout("no answer")), False),
        ("sendMessage", failure(NetworkError, httpx.RemoteProtocolError("disconnected")), False),
        ("sendMessage", failure(NetworkError, httpx.ReadError("reset")), False),
        ("copyMessage", failure(NetworkError, httpx.ReadError("reset")), False),
        ("editMessageText", failure(NetworkError, httpx.RemoteProtocolError("disconnected")), True),
        ("answerCallbackQuery", failure(NetworkError, httpx.ReadError("reset")), True),
        ("editMessageText", failure(TimedOut, httpx.ReadTimeout("no answer")), False),
        ("sendMessage", failure(BadRequest, None), False),
    ],
)
def test_a_request_is_sent_again_only_when_that_cannot_act_twice(
    endpoint: str, error: NetworkError, retried: bool
) -> None:
    assert may_retry(endpoint, error) is retried


@pytest.mark.parametrize(
    ("endpoint", "attempts", "delays"),
    [("editMessageText", 4, [0.5, 1.0, 2.0]), ("sendMessage", 1, [])],  # a send that may have been delivered: once
)
async def test_a_retryable_failure_is_sent_three_more_times_with_doubling_delays_then_raised(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, attempts: int, delays: list[float]
) -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(outgoing, "asyncio", SimpleNamespace(sleep=sleep))  # no real waiting, only its record
    calls: list[str] = []

    async def bad_gateway(*_: Any, **__: Any) -> bool:
        calls.append(endpoint)
        raise NetworkError("Bad Gateway")  # an error status: Telegram may have acted on a send

    limiter = outgoing_limiter(0)  # no rate limit: only the retries are under test
    await limiter.initialize()
    try:
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await limiter.process_request(bad_gateway, (), {}, endpoint, {"chat_id": 1}, None)
    finally:
        await limiter.shutdown()
    assert (len(calls), slept) == (attempts, delays)


@pytest.mark.parametrize(
    ("rate", "burst", "seconds"), [(0.25, 1, 4.0), (0.5, 1, 2.0), (2.5, 2.5, 1.0), (30.0, 30, 1.0)]
)
def test_the_outgoing_limit_allows_its_rate_as_whole_messages(rate: float, burst: float, seconds: float) -> None:
    # AIORateLimiter refuses everything under one message per period: below 1/s the period stretches instead.
    bucket = outgoing_limiter(rate)._base_limiter
    assert bucket is not None
    assert (bucket.max_rate, bucket.time_period) == (burst, seconds)
    assert outgoing_limiter(0)._base_limiter is None


async def test_a_429_that_persists_is_raised_after_the_retries_and_never_pauses_the_whole_bot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    async def flooded(*_: Any, **__: Any) -> bool:
        calls.append("sendMessage")
        raise RetryAfter(0)  # wait 0 s (and 0.1 s to spare), again and again

    limiter = outgoing_limiter(0, max_retries=2)
    await limiter.initialize()
    try:
        with pytest.raises(RetryAfter):
            await limiter.process_request(flooded, (), {}, "sendMessage", {"chat_id": 5}, None)
    finally:
        await limiter.shutdown()
    assert len(calls) == 3
    assert "Rate limit hit" not in caplog.text  # AIORateLimiter's own handling, which pauses every chat, never ran


async def test_a_429_given_up_on_still_holds_its_chat_back() -> None:
    sent_at: list[float] = []

    async def flooded(*_: Any, **__: Any) -> bool:
        raise RetryAfter(1)

    async def fine(*_: Any, **__: Any) -> bool:
        sent_at.append(time.monotonic())
        return True

    limiter = outgoing_limiter(0, max_retries=0)  # gives up at the first 429
    await limiter.initialize()
    try:
        with pytest.raises(RetryAfter):
            await limiter.process_request(flooded, (), {}, "sendMessage", {"chat_id": 7}, None)
        gave_up = time.monotonic()
        await limiter.process_request(fine, (), {}, "sendMessage", {"chat_id": "7"}, None)  # the same chat
        await limiter.process_request(fine, (), {}, "sendMessage", {"chat_id": 8}, None)  # another one
    finally:
        await limiter.shutdown()
    assert sent_at[0] - gave_up >= 1.0  # Telegram's last word was "wait 1 s", and it was heeded
    assert sent_at[1] - sent_at[0] < 0.5
