"""A busy group's updates beyond the per-chat cap: dropped, but a button press is never left unanswered."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot import app as bot_app
from bot.outgoing import RetryingRateLimiter
from bot.service import Predictors
from bot.update_log import UPDATE_LOGGER
from bot.update_processor import CHAT_BUSY
from tests.bot.conftest import running_bot, settings_for
from tests.bot.test_unusual_updates import handled
from tests.fake_telegram import FakeTelegram


@pytest.fixture(autouse=True)
def update_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=UPDATE_LOGGER)


async def test_every_press_in_a_busy_group_is_answered(
    telegram: FakeTelegram,
    tmp_path: Path,
    predictors: Predictors,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Forty members confirm one answer, once each: legitimate use. Each press redraws the message, and a group
    # gets 20 edits a minute (here 20 in 3 s), so more than 32 of the group's presses are in progress at once.
    monkeypatch.setattr(
        bot_app,
        "outgoing_limiter",
        lambda rate: RetryingRateLimiter(overall_max_rate=rate, group_max_rate=20, group_time_period=3),
    )
    settings = settings_for(telegram, tmp_path)
    group, members = -100600, range(1000, 1040)
    async with running_bot(settings, predictors):
        telegram.inject_message(5, "/guess Rossi", chat_id=group)
        await handled(caplog, 1)
        message_id = telegram.last_bot_message_id(group)
        confirm = telegram.messages[(group, message_id)]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        for member in members:
            telegram.inject_callback(member, group, message_id, confirm)
        # A press never answered leaves its button spinning, and its user not knowing the verdict was lost.
        answers = await telegram.wait_for_count("answerCallbackQuery", len(members), timeout=30)
    assert len(answers) == len(members)
    refused = [call for call in answers if call.params.get("text") == CHAT_BUSY]
    assert refused, "no press was over the cap: the test no longer exercises it"
    assert all(call.params.get("show_alert") in (True, "true") for call in refused)


async def test_one_member_pressing_fast_does_not_silence_the_group_for_everyone_else(
    telegram: FakeTelegram,
    tmp_path: Path,
    predictors: Predictors,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At the button limit (60 a minute) against a group's 20 edits, one member filled the group's 32 slots within
    # a minute, and the bot answered no one else there. Here time runs 20 times faster.
    monkeypatch.setattr(
        bot_app,
        "outgoing_limiter",
        lambda rate: RetryingRateLimiter(overall_max_rate=rate, group_max_rate=20, group_time_period=3),
    )
    settings = settings_for(telegram, tmp_path, button_presses_per_minute=1000)
    group = -100700
    async with running_bot(settings, predictors):
        telegram.inject_message(5, "/guess Rossi", chat_id=group)
        await handled(caplog, 1)
        message_id = telegram.last_bot_message_id(group)
        guess_id = telegram.messages[(group, message_id)]["reply_markup"]["inline_keyboard"][-1][0]["callback_data"]
        guess_id = guess_id.split(":")[1]
        for turn in range(100):  # "Other…", "« Back", ...: each press an edit
            telegram.inject_callback(5, group, message_id, f"{'ob'[turn % 2]}:{guess_id}")
        telegram.inject_message(9, "/guess Smith", chat_id=group)  # another member, while those presses wait
        await telegram.wait_for(
            lambda call: call.method == "sendMessage" and "Smith" in str(call.params.get("text")), timeout=15
        )
        await telegram.wait_for_count("answerCallbackQuery", 100, timeout=30)  # and every press was answered
