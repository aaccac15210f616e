"""What one user can make the bot do or keep: refusals flooded at it, padding stored, forged button payloads,
invisible characters echoed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.admin_views import NOT_ADMIN
from bot.callback_data import guess_ids_on
from bot.handlers import PRESSING_TOO_FAST, SLOW_DOWN
from bot.service import Predictors
from bot.update_log import UPDATE_LOGGER
from bot.views import guess_text, refusal_text
from core.predict import Guess, LanguageGuess
from core.text import parse_query
from tests.bot.conftest import running_bot, settings_for
from tests.bot.test_unusual_updates import handled, texts_to
from tests.databases import fetch
from tests.fake_telegram import FakeTelegram


@pytest.fixture(autouse=True)
def update_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=UPDATE_LOGGER)


async def test_admin_commands_from_a_non_admin_count_against_their_request_limit(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # Each refusal is a reply: unlimited, one user's flood of /models would take the bot's outgoing budget.
    settings = settings_for(telegram, tmp_path, guesses_per_minute=3)
    async with running_bot(settings, predictors):
        for text in ["/retrain", "/models", "/rollback"] * 4:
            telegram.inject_message(5, text)
        for _ in range(5):
            telegram.inject_message(1, "/models")  # the admin (BOT_ADMIN_IDS=1) is not limited
        await handled(caplog, 17)
    refusals = texts_to(telegram, 5)
    assert len(refusals) == 4 and refusals.count(NOT_ADMIN) == 3 and refusals.count(SLOW_DOWN) == 1
    assert len(texts_to(telegram, 1)) == 5 and SLOW_DOWN not in texts_to(telegram, 1)
    assert not (settings.model_dir / ".finetune.lock").exists()


async def test_admin_refusals_and_guesses_share_one_request_limit(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # A limit of its own for refusals would let a user double their replies by mixing /models with names.
    settings = settings_for(telegram, tmp_path, guesses_per_minute=3)
    async with running_bot(settings, predictors):
        for count, text in enumerate(["/models", "/models", "Rossi", "Smith"], start=1):
            telegram.inject_message(5, text)
            await handled(caplog, count)
    replies = texts_to(telegram, 5)
    assert replies[:2] == [NOT_ADMIN] * 2 and "Italian" in replies[2] and replies[3:] == [SLOW_DOWN]


async def test_padding_around_a_name_is_not_stored(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # A line is classified without its surrounding blanks; kept, 4,000 of them (12 kB of U+3000) made each
    # guess row a hundred times its size, 20 times a minute per user.
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        telegram.inject_message(7, "Rossi\n" + "\u3000" * 4000 + "Smith" + " " * 80)
        telegram.inject_message(8, "/guess \t Fyodor Dostoevsky \u3000\u3000")
        await handled(caplog, 2)
    stored = await fetch(settings.database_url, "SELECT surname, raw_input FROM guesses ORDER BY surname")
    assert stored == [("Dostoevsky", "Fyodor Dostoevsky"), ("Rossi", "Rossi"), ("Smith", "Smith")]
    assert "(the surname in “Fyodor Dostoevsky”)" in texts_to(telegram, 8)[0]


async def test_a_forged_button_naming_a_guess_its_message_does_not_show_is_refused(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # callback_data is whatever a client sends; the pressed message, keyboard and all, comes from Telegram.
    settings, group = settings_for(telegram, tmp_path), -100900
    async with running_bot(settings, predictors):
        for count, text in enumerate(["/guess Smith", "/guess Rossi", "/stats"], start=1):
            telegram.inject_message(5, text, chat_id=group)
            await handled(caplog, count)
        smith, rossi, stats = sorted(message_id for (chat, message_id) in telegram.messages if chat == group)
        before = {message_id: dict(telegram.messages[(group, message_id)]) for message_id in (smith, rossi, stats)}
        telegram.inject_callback(6, group, smith, "o:2")  # Rossi's keyboard under the message that shows Smith
        telegram.inject_callback(6, group, stats, "v:2:4")  # a verdict on Rossi "pressed" on the /stats message
        await handled(caplog, 5)
        refusals = telegram.sent("answerCallbackQuery")
        assert [call.params.get("text") for call in refusals] == ["That button is not one of mine."] * 2
        assert {message_id: telegram.messages[(group, message_id)] for message_id in before} == before
        telegram.inject_callback(7, group, rossi, "o:2")  # the real button still works
        await handled(caplog, 6)
    assert telegram.messages[(group, rossi)]["reply_markup"] != before[rossi]["reply_markup"]  # the full keyboard
    assert await fetch(settings.database_url, "SELECT guess_id, language FROM corrections") == []


def test_a_refusal_names_its_input_shortened_and_without_invisible_characters() -> None:
    assert refusal_text("Smith\x00Jones", "holds a control character") == (
        "I can't classify “SmithJones”: holds a control character."
    )
    assert "“" + "x" * 39 + "…”: too long" in refusal_text("x" * 5000, "too long")
    assert refusal_text("a\u202eb\u2028c\udcff", "r") == "I can't classify “abc\ufffd”: r."  # an RLO reorders the line
    assert refusal_text("\u200f\u200e", "no letters") == "I can't classify that: no letters."


def test_an_unreadable_button_on_a_message_vouches_for_no_guess() -> None:
    # A message's keyboard says which guesses a press on it may name: a button not of this bot's making (a link,
    # a payload from an older version) must not let the press name any guess at all.
    markup = InlineKeyboardMarkup([
        [InlineKeyboardButton("site", url="https://example.org"), InlineKeyboardButton("old", callback_data="7")],
        [InlineKeyboardButton("Italian", callback_data="v:41:9")],
    ])  # fmt: skip
    assert guess_ids_on(markup) == {41}
    assert guess_ids_on(InlineKeyboardMarkup([[InlineKeyboardButton("site", url="https://example.org")]])) == set()


def test_the_echoed_full_name_carries_no_bidi_isolate() -> None:
    # An unclosed isolate (RLI, U+2067) reorders the rest of the line as an override does.
    result = Guess(parse_query("Fyodor \u2067yksveotsoD\u2069"), (LanguageGuess("Russian", 0.9),), uncertain=False)
    assert "(the surname in “Fyodor yksveotsoD”)" in guess_text(result)


async def test_one_member_pressing_fast_in_a_group_leaves_the_others_their_own_press_limit(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings, group = settings_for(telegram, tmp_path, button_presses_per_minute=2), -100910
    async with running_bot(settings, predictors):
        telegram.inject_message(5, "/guess Rossi", chat_id=group)
        await handled(caplog, 1)
        message_id = telegram.last_bot_message_id(group)
        confirm = telegram.messages[(group, message_id)]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        for count in range(2, 5):  # user 5 presses three times: the third is over their limit
            telegram.inject_callback(5, group, message_id, confirm)
            await handled(caplog, count)
        telegram.inject_callback(6, group, message_id, confirm)  # another member's first press
        await handled(caplog, 5)
    answers = [call.params.get("text") for call in telegram.sent("answerCallbackQuery")]
    assert answers[2] == PRESSING_TOO_FAST and answers[3] == "Recorded: Italian is right. Thank you!"
    assert await fetch(settings.database_url, "SELECT user_id FROM corrections ORDER BY user_id") == [(5,), (6,)]
