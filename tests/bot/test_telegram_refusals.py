"""What Telegram refuses or leaves out in real use: blocked users, late answers, messages without text."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot import admin_views
from bot.service import Predictors
from tests.bot.conftest import running_bot, settings_for
from tests.databases import fetch
from tests.fake_telegram import FakeTelegram


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


async def guess_and_confirm_button(telegram: FakeTelegram, chat_id: int, name: str) -> tuple[int, str]:
    """Send ``name`` as ``chat_id``; the bot's reply's id and its ✅ button's data."""
    telegram.inject_message(chat_id, name)
    reply = await telegram.wait_for(lambda c: c.method == "sendMessage" and int(c.params["chat_id"]) == chat_id)
    return telegram.last_bot_message_id(chat_id), reply.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]


async def test_a_press_on_a_message_sent_without_its_text_is_recorded_and_keeps_the_text(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        message_id, confirm = await guess_and_confirm_button(telegram, 90, "Rossi")
        telegram.inject_callback(90, 90, message_id, confirm, with_text=False)
        await telegram.wait_for(lambda c: c.method == "editMessageReplyMarkup")
        await asyncio.sleep(0.2)
    [answer] = telegram.sent("answerCallbackQuery")
    # The message keeps whatever it showed before, maybe an earlier choice: the pop-up says what was stored.
    assert answer.params["text"] == "Recorded: Italian is right. Thank you!"
    assert not telegram.sent("editMessageText")  # no text to rebuild: rewriting it would wipe the guess
    assert "Rossi" in telegram.messages[(90, message_id)]["text"]
    assert await fetch(settings.database_url, "SELECT user_id, language FROM corrections") == [(90, "Italian")]
    assert errors(caplog) == []


async def test_a_press_on_a_message_without_its_keyboard_cannot_name_another_chat_s_guess(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    # A message Telegram sends without its keyboard cannot vouch for the guess a press names: the guess's own
    # chat is then all that keeps a forged press from voting on someone else's answer.
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        _, confirm = await guess_and_confirm_button(telegram, 90, "Rossi")
        other_message, _ = await guess_and_confirm_button(telegram, 93, "Smith")
        telegram.inject_callback(93, 93, other_message, confirm, with_text=False)  # Rossi's button, in chat 93
        [answer] = await telegram.wait_for_count("answerCallbackQuery", 1)
    assert answer.params["text"] == "I can't find that guess any more. Send the name again?"
    assert await fetch(settings.database_url, "SELECT user_id FROM corrections") == []
    assert not telegram.sent("editMessageReplyMarkup") and not telegram.sent("editMessageText")


async def test_a_user_who_blocked_the_bot_is_not_sent_an_apology_and_no_error_is_logged(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_bot(settings_for(telegram, tmp_path), predictors):
        telegram.fail_next("sendMessage", 403, description="Forbidden: bot was blocked by the user")
        telegram.inject_message(91, "Rossi")
        await telegram.wait_for(lambda c: c.method == "sendMessage")
        telegram.inject_message(92, "Rossi")  # the next user is answered as ever
        await telegram.wait_for(lambda c: c.method == "sendMessage" and int(c.params["chat_id"]) == 92)
        await asyncio.sleep(0.2)
    assert [int(c.params["chat_id"]) for c in telegram.sent("sendMessage")] == [91, 92]  # no apology to 91
    assert errors(caplog) == []


async def test_a_press_answered_too_late_still_updates_the_message(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        message_id, confirm = await guess_and_confirm_button(telegram, 93, "Rossi")
        too_old = "Bad Request: query is too old and response timeout expired or query ID is invalid"
        telegram.fail_next("answerCallbackQuery", 400, description=too_old)  # a backlog after a restart
        telegram.inject_callback(93, 93, message_id, confirm)
        edit = await telegram.wait_for(lambda c: c.method == "editMessageText")
        await asyncio.sleep(0.2)
    assert "Recorded" in edit.params["text"]
    assert await fetch(settings.database_url, "SELECT user_id, language FROM corrections") == [(93, "Italian")]
    assert not [c for c in telegram.sent("sendMessage") if "Sorry" in c.params["text"]]
    assert errors(caplog) == []


async def test_a_reply_in_a_group_goes_out_even_if_its_message_was_deleted(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    async with running_bot(settings_for(telegram, tmp_path), predictors):
        telegram.inject_message(94, "/guess Rossi", chat_id=-100424)
        reply = await telegram.wait_for(lambda c: c.method == "sendMessage")
    assert reply.params["reply_parameters"]["allow_sending_without_reply"] is True


@pytest.mark.parametrize("argument", ["x" * 4100, "../gru", "<b>v</b>"])
async def test_rollback_to_something_that_cannot_be_a_version_is_refused_without_echoing_it(
    argument: str, telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    async with running_bot(settings_for(telegram, tmp_path, bot_admin_ids="95"), predictors):
        telegram.inject_message(95, f"/rollback {argument}")
        reply = await telegram.wait_for(lambda c: c.method == "sendMessage")
    assert reply.params["text"] == admin_views.NOT_A_VERSION
