"""Long polling's backlog gate at shutdown: a held getUpdates does not delay stopping, and what was fetched is
answered within the stop grace period."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import backlog as backlog_module
from bot.app import REDRAWS_AT_STOP_S, build_application
from bot.backlog import STALL_SHOWN_S, UpdateBacklog
from bot.polling_health import PollingHealth
from bot.service import Predictors
from bot.update_log import LoggingApplication
from tests.bot.conftest import running_bot, settings_for
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]


async def test_stopping_while_the_gate_holds_getupdates_is_prompt_and_confirms_what_was_fetched(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backlog_module, "BACKLOG_LIMIT", 8)
    calls: list[dict[str, Any]] = []
    get_updates = telegram._api_getUpdates

    async def watched(params: dict[str, Any]) -> list[dict[str, Any]]:
        calls.append(dict(params))
        return await get_updates(params)

    monkeypatch.setattr(telegram, "_api_getUpdates", watched)
    settings = settings_for(telegram, tmp_path, telegram_messages_per_second=4)
    async with running_bot(settings, predictors) as application:
        backlog = application._backlog
        first = min(telegram.inject_message(user, "/help") for user in range(3000, 3020))
        while backlog.pending < backlog.limit:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the next getUpdates is held at the gate by now
        held = len(calls)
        started = time.monotonic()
        await application.updater.stop()
        assert time.monotonic() - started < 1.0  # not until the backlog drains (about 2 s at 4 replies a second)
        assert len(calls) == held + 1 and calls[-1].get("timeout") == "0"  # the confirming call, not held
        assert int(calls[-1]["offset"]) > first  # confirms what was fetched
        await application.updater.start_polling(poll_interval=0.0, timeout=1)  # for running_bot to stop again


def test_a_stopping_bot_answers_a_full_backlog_within_the_stop_grace_period(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    """Stopping confirms every fetched update to Telegram, then answers them at the outgoing rate at best: what is
    still unanswered when docker kills the bot is lost (and post_shutdown never runs)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grace = max(
        float(service["stop_grace_period"].removesuffix("s"))
        for service in compose["services"].values()
        if "stop_grace_period" in service
    )
    settings = settings_for(telegram, tmp_path)  # the default 30 messages a second
    application = build_application(settings, predictors)
    assert isinstance(application, LoggingApplication) and application._backlog is not None
    backlog = application._backlog
    most_in_flight = backlog.limit - 1 + 100  # the gate opens below the limit; one getUpdates brings up to 100
    drain_s = most_in_flight / settings.telegram_messages_per_second
    assert drain_s + REDRAWS_AT_STOP_S < grace, (backlog.limit, drain_s)


async def test_health_and_the_log_report_a_full_backlog_from_which_no_update_is_answered_for_two_minutes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Long polling waits while the backlog is full: if nothing leaves it (a handler hung on a lock, a database that
    # never answers), the bot hears no one, and /health said 200 throughout.
    now = [0.0]
    backlog = UpdateBacklog(limit=3, clock=lambda: now[0])
    health = PollingHealth(clock=lambda: now[0], backlog=backlog)
    answers = [asyncio.get_running_loop().create_future() for _ in range(4)]
    for answer in answers[:3]:
        backlog.track(asyncio.ensure_future(answer))
    now[0] = STALL_SHOWN_S - 1
    assert health.problem() is None  # full, as in any burst, and answering
    answers[0].set_result(None)
    await asyncio.sleep(0.01)  # the done callbacks run
    backlog.track(asyncio.ensure_future(answers[3]))  # full again: the next update came in
    now[0] += STALL_SHOWN_S - 1
    assert health.problem() is None  # an update left it a moment ago
    now[0] += 2
    stalled = f"3 updates waiting and none answered for {STALL_SHOWN_S + 1:.0f} s: fetching no more"
    assert health.problem() == stalled
    monkeypatch.setattr(backlog_module, "STALL_LOGGED_EVERY_S", 0.01)  # once a minute in earnest
    polling = asyncio.ensure_future(backlog.room())  # where the next getUpdates waits
    await asyncio.sleep(0.05)
    assert f"long polling waits: {stalled}" in caplog.messages and not polling.done()
    answers[1].set_result(None)
    await asyncio.wait_for(polling, 1)
    assert health.problem() is None
    for answer in answers[2:]:
        answer.set_result(None)


async def test_the_updater_stopping_as_an_update_leaves_a_full_backlog_cancels_the_waiting_getupdates() -> None:
    # The updater stops polling by cancelling the getUpdates call waiting in room(). Were the cancel lost because
    # an update left the backlog in the same moment, that call would long-poll on after the stop, holding the one
    # connection the shutdown's confirming getUpdates needs.
    backlog = UpdateBacklog(limit=1)
    answer = asyncio.get_running_loop().create_future()
    update = asyncio.ensure_future(answer)
    backlog.track(update)
    polling = asyncio.ensure_future(backlog.room())
    await asyncio.sleep(0.01)  # it waits
    update.add_done_callback(lambda _: polling.cancel())  # the stop, right after the update leaves
    answer.set_result(None)
    with pytest.raises(asyncio.CancelledError):
        await polling
