"""Which failed Bot API requests the bot sends again: only those a retry cannot carry out twice."""

from __future__ import annotations

import httpx
import pytest
from telegram.error import BadRequest, NetworkError, TimedOut

from bot.outgoing import may_retry


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
