"""Floods of updates from one chat, or one member of a group: capped, so the bot goes on answering everyone else,
and a dropped button press is still answered."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.service import Predictors
from bot.update_log import UPDATE_LOGGER
from bot.update_processor import CHAT_BUSY
from tests.bot.conftest import running_bot, settings_for
from tests.bot.test_unusual_updates import handled
from tests.fake_telegram import FakeTelegram

EDITS = ("editMessageText", "editMessageReplyMarkup")


@pytest.fixture(autouse=True)
def update_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=UPDATE_LOGGER)


pytestmark = pytest.mark.usefixtures("group_edits_twenty_times_faster")


async def guess_in_group(telegram: FakeTelegram, caplog: pytest.LogCaptureFixture, group: int) -> tuple[int, str]:
    """Ask for a guess in ``group``: its message id, and the callback data of its first (✅) button."""
    telegram.inject_message(5, "/guess Rossi", chat_id=group)
    await handled(caplog, 1)
    message_id = telegram.last_bot_message_id(group)
    confirm = telegram.messages[(group, message_id)]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    return message_id, str(confirm)


def press_fast(telegram: FakeTelegram, group: int, message_id: int, confirm: str, presses: int) -> None:
    """User 5 pressing "Other…" and "« Back" in turn, each press an edit."""
    guess_id = confirm.split(":")[1]
    for turn in range(presses):
        telegram.inject_callback(5, group, message_id, f"{'ob'[turn % 2]}:{guess_id}")


async def test_every_press_in_a_busy_group_is_answered(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # Forty members confirm one answer, once each: legitimate use, but more than 32 of the group's presses are
    # in progress at once, waiting for their edits.
    group, members = -100600, range(1000, 1040)
    async with running_bot(settings_for(telegram, tmp_path), predictors):
        message_id, confirm = await guess_in_group(telegram, caplog, group)
        for member in members:
            telegram.inject_callback(member, group, message_id, confirm)
        # A press never answered leaves its button spinning, and its user not knowing the verdict was lost.
        answers = await telegram.wait_for_count("answerCallbackQuery", len(members), timeout=30)
    assert len(answers) == len(members)
    refused = [call for call in answers if call.params.get("text") == CHAT_BUSY]
    assert refused, "no press was over the cap: the test no longer exercises it"
    assert all(call.params.get("show_alert") in (True, "true") for call in refused)


async def test_one_member_pressing_in_a_group_cannot_stall_every_other_chat(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # Presses waiting for their edit each held one of the 256 slots the Application handles updates in: at 60
    # presses a minute (the default limit) one user filled them all in about six minutes, and then no update of
    # anyone was handled.
    settings = settings_for(telegram, tmp_path, button_presses_per_minute=1000)
    group = -100500
    async with running_bot(settings, predictors):
        message_id, confirm = await guess_in_group(telegram, caplog, group)
        press_fast(telegram, group, message_id, confirm, 300)
        await telegram.wait_for_count("answerCallbackQuery", 20)
        telegram.inject_message(9, "Smith")  # someone else, in a private chat
        await telegram.wait_for(lambda call: call.method == "sendMessage" and int(call.params["chat_id"]) == 9)
        edits_before = sum(1 for call in telegram.calls if call.method in EDITS)
    # Before the caps the answer waited for 45 presses in that group to finish (their edits at the group's pace).
    assert edits_before < 40, f"the other user's answer waited for {edits_before} edits to the group"
    dropped = [record for record in caplog.records if "dropped an update" in record.getMessage()]
    assert len(dropped) == 1  # the flood reaches the log as one line a minute, not a line per dropped update


async def test_one_member_pressing_fast_does_not_silence_the_group_for_everyone_else(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # With the chat's cap alone, one member at the button limit filled the group's 32 slots within a minute, and
    # the bot answered no one else there.
    settings = settings_for(telegram, tmp_path, button_presses_per_minute=1000)
    group = -100700
    async with running_bot(settings, predictors):
        message_id, confirm = await guess_in_group(telegram, caplog, group)
        press_fast(telegram, group, message_id, confirm, 100)
        telegram.inject_message(9, "/guess Smith", chat_id=group)  # another member, while those presses wait
        await telegram.wait_for(
            lambda call: call.method == "sendMessage" and "Smith" in str(call.params.get("text")), timeout=15
        )
        await telegram.wait_for_count("answerCallbackQuery", 100, timeout=30)  # and every press was answered
