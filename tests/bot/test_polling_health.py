"""/health says when long polling fails: a second process polling with the token, or Telegram unreachable."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from telegram.error import TelegramError

from bot.db import migrate
from bot.polling_health import CONFLICT_SHOWN_S, PollingHealth, WatchedGetUpdatesRequest
from bot.server import serve
from bot.service import Predictors
from tests.bot.conftest import settings_for
from tests.bot.test_webhook import free_port
from tests.fake_telegram import FakeTelegram

CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_conflict_is_reported_while_successes_come_between_and_for_a_while_after() -> None:
    clock = Clock()
    health = PollingHealth(clock)
    assert health.problem() is None
    health.failed(f"HTTP 409: {CONFLICT}", conflict=True)
    clock.now += 5
    health.succeeded()  # two pollers take turns: one's success does not end the conflict
    problem = health.problem()
    assert problem is not None and problem.startswith("another process is polling Telegram with this bot's token")
    clock.now += CONFLICT_SHOWN_S - 5
    assert health.problem() is not None
    clock.now += 1
    assert health.problem() is None


def test_other_failures_are_reported_from_the_first_until_a_call_succeeds() -> None:
    clock = Clock()
    health = PollingHealth(clock)
    health.failed("HTTP 502: Bad Gateway")
    clock.now += 30
    health.failed("TimedOut: Timed out")
    assert health.problem() == "getUpdates failing for 30 s: TimedOut: Timed out"
    health.succeeded()
    assert health.problem() is None
    health.failed("HTTP 502: Bad Gateway")  # a new streak counts from its own start
    clock.now += 2
    health.failed("HTTP 502: Bad Gateway")
    assert health.problem() == "getUpdates failing for 2 s: HTTP 502: Bad Gateway"


def test_a_lone_failed_call_is_not_reported_the_next_one_failing_is() -> None:
    # A blip (one 502, one timeout) was 503 until the next call succeeded: a long poll, up to 10 s later.
    clock = Clock()
    health = PollingHealth(clock)
    health.failed("TimedOut: Timed out")
    assert health.problem() is None
    clock.now += 10
    health.succeeded()
    health.failed("HTTP 502: Bad Gateway")
    clock.now += 1
    assert health.problem() is None
    health.failed("HTTP 502: Bad Gateway")
    assert health.problem() == "getUpdates failing for 1 s: HTTP 502: Bad Gateway"


def test_polling_is_not_said_to_work_again_while_a_second_poller_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    # Two pollers take turns: each success between conflicts logged "works again", while /health said otherwise.
    caplog.set_level(logging.INFO, logger="bot")
    clock = Clock()
    health = PollingHealth(clock)
    for _ in range(3):
        health.failed(f"HTTP 409: {CONFLICT}", conflict=True)
        clock.now += 10
        health.succeeded()
    assert health.problem() is not None
    assert not [m for m in caplog.messages if "works again" in m], caplog.messages
    clock.now += CONFLICT_SHOWN_S
    health.succeeded()
    assert health.problem() is None
    assert [m for m in caplog.messages if "works again" in m] == [
        "long polling works again after 150 s and 3 failed calls"
    ]


async def test_an_answer_that_is_not_the_bot_api_s_is_a_failure() -> None:
    # A proxy or captive portal answering 200 with its own page: every getUpdates failed in the library, whose error
    # callback is silenced (the request logs failures), and /health said 200 since the call "succeeded".
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>Log in to continue</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    health = PollingHealth()
    request = WatchedGetUpdatesRequest(health)
    await request.initialize()
    try:
        for _ in range(2):
            with pytest.raises(TelegramError, match="Invalid server response"):
                await request.post(f"http://127.0.0.1:{port}/bot123456:TEST-token/getUpdates")
    finally:
        await request.shutdown()
        await runner.cleanup()
    assert health.problem() == "getUpdates failing for 0 s: HTTP 200: not an answer of the Bot API"


def test_failures_are_logged_once_a_minute_with_a_count_and_the_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    clock = Clock()
    health = PollingHealth(clock)
    for _ in range(30):  # the library's backoff tops out at one call every 30 s
        health.failed("HTTP 502: Bad Gateway")
        clock.now += 1
    health.failed("HTTP 502: Bad Gateway")
    health.succeeded()
    health.succeeded()
    assert caplog.messages == [
        "long polling failed: HTTP 502: Bad Gateway; retrying",
        "long polling works again after 30 s and 31 failed calls",
    ]
    clock.now += 61
    health.failed(f"HTTP 409: {CONFLICT}", conflict=True)
    assert caplog.messages[-1].startswith("long polling failed: another process is polling")


@asynccontextmanager
async def serving(telegram: FakeTelegram, tmp_path: Path, predictors: Predictors) -> AsyncIterator[str]:
    """``serve`` in this process, polling the fake Bot API; yields its /health URL once polling has started."""
    port = free_port()
    settings = settings_for(telegram, tmp_path, health_listen=f"127.0.0.1:{port}")
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, Predictors(gru=predictors.gru, rnn=predictors.rnn), stop))
    try:
        await telegram.wait_for(lambda c: c.method == "deleteWebhook", timeout=60)
        yield f"http://127.0.0.1:{port}/health"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def health_until(url: str, status: int, timeout: float = 20.0) -> dict[str, object]:
    """/health's body once it answers ``status``; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as client:
        while True:
            async with client.get(url) as response:
                body: dict[str, object] = await response.json()
                if response.status == status:
                    return body
            assert time.monotonic() < deadline, f"/health never answered {status}: {body}"
            await asyncio.sleep(0.05)


async def test_health_says_when_another_process_polls_with_the_token(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # Two processes polling with one token end each other's getUpdates with 409 by turns, and each answers only
    # some of the users. The library retried in silence but for a traceback per call; /health said 200.
    caplog.set_level(logging.INFO)
    async with serving(telegram, tmp_path, predictors) as url:
        assert (await health_until(url, 200))["polling"] == "ok"
        telegram.fail_next("getUpdates", 409, times=2, description=CONFLICT)
        telegram.inject_message(7, "Rossi")  # ends the long poll under way: the next two calls conflict
        body = await health_until(url, 503)
        assert str(body["polling"]).startswith("another process is polling Telegram with this bot's token")
        assert body["database"] == "ok" and body["running"] is True
        telegram.inject_message(7, "Nakamura")  # it still polls, and answers whom it hears
        await telegram.wait_for(lambda c: "Japanese" in str(c.params.get("text")), timeout=30)
        later = await health_until(url, 503, timeout=0)  # a success between conflicts does not end one
        assert str(later["polling"]).startswith("another process is polling")
    conflicts = [m for m in caplog.messages if "another process is polling" in m]
    assert len(conflicts) == 1, caplog.messages  # two failed calls, one line
    assert not [r for r in caplog.records if r.exc_info], "no traceback per failed call"


async def test_health_is_503_while_getupdates_fails_and_200_once_it_answers(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    async with serving(telegram, tmp_path, predictors) as url:
        telegram.fail_next("getUpdates", 502, times=2, description="Bad Gateway")
        telegram.inject_message(7, "Rossi")
        body = await health_until(url, 503)
        assert str(body["polling"]).startswith("getUpdates failing for "), body
        assert str(body["polling"]).endswith("s: HTTP 502: Bad Gateway")
        telegram.inject_message(7, "Nakamura")  # answered by a call that succeeds
        await telegram.wait_for(lambda c: "Japanese" in str(c.params.get("text")), timeout=30)
        assert (await health_until(url, 200))["polling"] == "ok"
