"""Floods of updates from one chat, or one member of a group: capped, so the bot goes on answering everyone else,
and a dropped button press is still answered."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from telegram import Update

from bot.service import Predictors
from bot.update_log import UPDATE_LOGGER
from bot.update_processor import CHAT_BUSY, PerChatUpdateProcessor
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


def update_from(user_id: int, chat_id: int | None) -> Update:
    """A message update from ``user_id`` in ``chat_id`` (a private chat when equal), or one naming no chat."""
    if chat_id is None:  # as an inline query arrives: a user, no chat
        return Update.de_json({"update_id": 1, "inline_query": {"id": "1", "from": telegram_user(user_id),
                                                               "query": "Rossi", "offset": ""}})  # fmt: skip
    chat = {"id": chat_id, "type": "private" if chat_id == user_id else "supergroup"}
    body = {"message_id": 1, "date": 0, "chat": chat, "from": telegram_user(user_id), "text": "/guess Rossi"}
    return Update.de_json({"update_id": 1, "message": body})


def telegram_user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}


async def test_the_caps_count_updates_in_progress_exactly_and_forget_chats_once_done() -> None:
    processor, release, ran = PerChatUpdateProcessor(), asyncio.Event(), []

    async def handle(name: str) -> None:
        ran.append(name)
        await release.wait()

    def process(name: str, user_id: int, chat_id: int | None) -> asyncio.Task[None]:
        return asyncio.create_task(processor.do_process_update(update_from(user_id, chat_id), handle(name)))

    group = -100300
    # Defaults: 4 at once from one member of a group, 32 from one chat.
    tasks = [process(f"member {turn}", 5, group) for turn in range(5)]
    tasks += [process(f"other {user}", user, group) for user in range(100, 129)]  # 28 fill the chat's 32; one more
    tasks += [process(f"private {turn}", 9, 9) for turn in range(6)]  # in private the chat's cap alone applies
    tasks.append(process("no chat", 9, None))
    await asyncio.sleep(0.05)
    assert [name for name in ran if name.startswith("member")] == [f"member {turn}" for turn in range(4)]
    assert len([name for name in ran if name.startswith(("member", "other"))]) == 32
    assert "other 127" in ran and "other 128" not in ran  # the 33rd of the chat was dropped
    assert sum(name.startswith("private") for name in ran) == 6 and "no chat" in ran
    release.set()
    await asyncio.gather(*tasks)
    assert not processor._in_progress and not processor._member_in_progress  # no chat is remembered forever
