"""The bot end to end: real python-telegram-bot over loopback HTTP to the fake Bot API, real SQLite."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bot import views
from bot.config import Settings
from bot.handlers import PRESSING_TOO_FAST
from bot.service import Predictors
from tests.bot.conftest import running_bot, settings_for
from tests.databases import fetch
from tests.fake_telegram import Call, FakeTelegram


async def rows(settings: Settings, sql: str) -> list[tuple[object, ...]]:
    return await fetch(settings.database_url, sql)


def reply_to(chat_id: int) -> Callable[[Call], bool]:
    return lambda c: c.method == "sendMessage" and int(c.params["chat_id"]) == chat_id


def buttons(call: Call) -> list[tuple[str, str]]:
    markup = call.params["reply_markup"]
    return [(b["text"], b["callback_data"]) for row in markup["inline_keyboard"] for b in row]


async def test_start_guess_and_plain_text(telegram: FakeTelegram, settings: Settings, predictors: Predictors) -> None:
    async with running_bot(settings, predictors):
        assert telegram.sent("setMyCommands")
        telegram.inject_message(10, "/start")
        start = await telegram.wait_for(reply_to(10))
        assert "surname" in start.params["text"]

        telegram.inject_message(11, "/guess Dostoevsky")
        guess = await telegram.wait_for(reply_to(11))
        assert guess.params["parse_mode"] == "HTML"
        assert "<b>Dostoevsky</b>" in guess.params["text"] and "Russian" in guess.params["text"]
        labels = [text for text, _ in buttons(guess)]
        assert labels[0] == "✅ Russian" and labels[-1] == "Other…" and len(labels) == 4

        telegram.inject_message(12, "Nakamura")
        plain = await telegram.wait_for(reply_to(12))
        assert "Japanese" in plain.params["text"].split("\n")[1]
    assert await rows(settings, "SELECT surname, top_language, model_version FROM guesses ORDER BY id") == [
        ("Dostoevsky", "Russian", predictors.gru.version),
        ("Nakamura", "Japanese", predictors.gru.version),
    ]


async def test_a_pasted_list_is_answered_line_by_line_up_to_a_limit(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
    async with running_bot(settings, predictors):
        telegram.inject_message(13, "Nakamura\nRossi\r\n\nDostoevsky\n")
        answers = await telegram.wait_for_count("sendMessage", 3)
        names = ["Ivanov", "Smith", "Kowalski", "Nguyen", "Schmidt", "Tanaka", "Dubois"]
        telegram.inject_message(14, "\n".join(names))
        more = [c for c in await telegram.wait_for_count("sendMessage", 3 + 6) if int(c.params["chat_id"]) == 14]
    assert ["Japanese" in answers[0].params["text"], "Italian" in answers[1].params["text"]] == [True, True]
    assert "Russian" in answers[2].params["text"]
    assert [f"<b>{name}</b>" in call.params["text"] for call, name in zip(more, names[:5], strict=False)] == [True] * 5
    assert more[5].params["text"] == views.more_names_than_answered(5, 7)
    assert len(await rows(settings, "SELECT id FROM guesses")) == 3 + 5


async def test_in_a_group_only_the_guess_command_is_answered(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
    async with running_bot(settings, predictors):
        telegram.inject_message(15, "see you all tomorrow", chat_id=-100500)  # people talking
        telegram.inject_message(15, "/guess Rossi", chat_id=-100500)
        reply = await telegram.wait_for(reply_to(-100500))
        telegram.inject_message(16, "Nakamura")  # and a private message after both
        await telegram.wait_for(reply_to(16))
    assert "Italian" in reply.params["text"]
    assert len([c for c in telegram.sent("sendMessage") if int(c.params["chat_id"]) == -100500]) == 1
    assert await rows(settings, "SELECT surname FROM guesses ORDER BY id") == [("Rossi",), ("Nakamura",)]


async def test_button_presses_store_one_row_per_user_and_guess(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
    async with running_bot(settings, predictors):
        telegram.inject_message(20, "Rossi")
        reply = await telegram.wait_for(reply_to(20))
        message_id = telegram.last_bot_message_id(20)
        choices = dict(buttons(reply))
        confirm = next(data for text, data in buttons(reply) if text.startswith("✅"))

        telegram.inject_callback(20, 20, message_id, confirm)
        edit = await telegram.wait_for(lambda c: c.method == "editMessageText")
        assert "✅ Recorded" in edit.params["text"]
        assert await rows(settings, "SELECT user_id, language, confirmed FROM corrections") == [(20, "Italian", 1)]

        # Open the full keyboard, pick another language: the same row is updated, not a new one.
        telegram.inject_callback(20, 20, message_id, choices["Other…"])
        opened = await telegram.wait_for(lambda c: c.method == "editMessageReplyMarkup")
        full = {b["text"]: b["callback_data"] for row in opened.params["reply_markup"]["inline_keyboard"] for b in row}
        assert len(full) == 19 and "« Back" in full
        telegram.inject_callback(20, 20, message_id, full["Spanish"])
        await telegram.wait_for(lambda c: c.method == "editMessageText" and "Rossi is Spanish" in c.params["text"])
        assert await rows(settings, "SELECT user_id, language, confirmed FROM corrections") == [(20, "Spanish", 0)]
        assert telegram.sent("answerCallbackQuery")[-1].params["text"] == "Recorded: Rossi is Spanish. Thank you!"

        # A second user in a group chat adds their own row for the same guess.
        answers = len(telegram.sent("answerCallbackQuery"))
        telegram.inject_callback(21, 20, message_id, full["Spanish"])
        await telegram.wait_for_count("answerCallbackQuery", answers + 1)
        assert len(await rows(settings, "SELECT id FROM corrections")) == 2
        assert all(len(data.encode()) <= 64 for data in full.values())


async def test_forged_and_stale_callbacks_write_nothing(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
    async with running_bot(settings, predictors):
        telegram.inject_message(30, "Schmidt")
        await telegram.wait_for(reply_to(30))
        forged = ["v:1:99", "v:999:3", "x:1:3", "v:1", "o:1:3", "", "v:1:3;DROP TABLE guesses", "v:01:3", "v:1:3" * 20]
        forged += ["v:99999999999:3", "o:2147483648", "b:99999999999"]  # beyond a 32-bit id column
        for data in forged:
            telegram.inject_callback(30, 30, 1, data)
        telegram.inject_callback(31, 31, 1, "v:1:3")  # a real guess, but from another chat
        answers = await telegram.wait_for_count("answerCallbackQuery", len(forged) + 1)
        assert all(a.params.get("show_alert") in (True, "true", "True") for a in answers)
        # Each refused as not the bot's own: none got as far as failing, and an apology ("try again").
        assert {a.params.get("text") for a in answers} == {"That button is not one of mine."}
        assert await rows(settings, "SELECT COUNT(*) FROM corrections") == [(0,)]
        assert not telegram.sent("editMessageText")


async def test_hostile_inputs_each_get_an_answer(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
    inputs = [
        "/guess",
        "/guess    ",
        "x" * 5000,
        "🙂🙂🙂",
        "<b>Smith</b><script>",
        "Robert'); DROP TABLE guesses;--",
        "1234567",
        "Достоевский",
        "王小明",
        "محمد",
        "\u200fשלום\u200f",
        "&amp; &lt;",
        "/compare",
        "/compare Rossi",
        "德" * 60 + "李",  # 61 characters, 122 once transliterated: longer than the surname column
        "Smith\x00Jones",  # refused, and so never stored: PostgreSQL text cannot hold NUL
    ]
    async with running_bot(settings, predictors) as application:
        for user, text in enumerate(inputs, start=100):
            telegram.inject_message(user, text)
        replies = await telegram.wait_for_count("sendMessage", len(inputs))
        assert application.running
        by_chat = {int(r.params["chat_id"]): r.params["text"] for r in replies}
        assert set(by_chat) == set(range(100, 100 + len(inputs)))
        assert "<code>/guess Nakamura</code>" in by_chat[100]
        assert "too long" in by_chat[102] and "no letters" in by_chat[103]
        assert "<script>" not in by_chat[104] and "</b><" not in by_chat[104]  # quoted only escaped, as text
        assert "Russian" in by_chat[107]
        assert "GRU" in by_chat[113] and "Elman RNN" in by_chat[113]
        assert "too long once written in Latin letters" in by_chat[114]
        assert "control character" in by_chat[115]
    assert await rows(settings, "SELECT raw_input FROM guesses WHERE user_id = 115") == []
    assert (await rows(settings, "SELECT COUNT(*) FROM guesses"))[0][0] >= 5


async def test_fifty_users_at_once_are_all_answered(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
    names = ["Nakamura", "Rossi", "Ivanov", "Schmidt", "Nguyen"]
    async with running_bot(settings, predictors):
        for user in range(1000, 1050):
            telegram.inject_message(user, f"/guess {names[user % 5]}")
        replies = await telegram.wait_for_count("sendMessage", 50, timeout=60)
    assert {int(r.params["chat_id"]) for r in replies} == set(range(1000, 1050))
    assert await rows(settings, "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM guesses") == [(50, 50)]


async def test_data_survives_a_restart(telegram: FakeTelegram, settings: Settings, predictors: Predictors) -> None:
    async with running_bot(settings, predictors):
        telegram.inject_message(40, "Papadopoulos")
        reply = await telegram.wait_for(reply_to(40))
        telegram.inject_callback(40, 40, telegram.last_bot_message_id(40), buttons(reply)[0][1])
        await telegram.wait_for(lambda c: c.method == "editMessageText")
    async with running_bot(settings, predictors):
        telegram.inject_message(40, "/stats")
        stats = await telegram.wait_for(lambda c: c.method == "sendMessage" and "Statistics" in c.params["text"])
    assert "Guesses: 1" in stats.params["text"] and "100% of 1" in stats.params["text"]
    assert predictors.gru.version in stats.params["text"]


async def test_incoming_rate_limit(telegram: FakeTelegram, tmp_path: Path, predictors: Predictors) -> None:
    settings = settings_for(telegram, tmp_path, guesses_per_minute=3)
    async with running_bot(settings, predictors):
        for _ in range(5):
            telegram.inject_message(50, "Rossi")
        replies = await telegram.wait_for_count("sendMessage", 4)  # the fifth is not told again
    slow = [r for r in replies if "faster than I can take" in r.params["text"]]
    assert len(slow) == 1
    assert await rows(settings, "SELECT COUNT(*) FROM guesses") == [(3,)]


async def test_telegram_429_is_waited_out_and_5xx_retried_where_it_cannot_send_twice(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
    async with running_bot(settings, predictors):
        telegram.fail_next("sendMessage", 429, retry_after=1)  # Telegram did not take it: sent again
        telegram.inject_message(60, "Nguyen")
        attempts = await telegram.wait_for_count("sendMessage", 2, timeout=15)
        delivered = telegram.messages[(60, telegram.last_bot_message_id(60))]
        confirm = buttons(attempts[-1])[0][1]
        telegram.fail_next("editMessageText", 502)  # an edit again is harmless: retried
        telegram.inject_callback(60, 60, telegram.last_bot_message_id(60), confirm)
        edits = await telegram.wait_for_count("editMessageText", 2, timeout=15)
        telegram.fail_next("sendMessage", 502)  # a message again could be a second one: an apology instead
        telegram.inject_message(61, "Rossi")
        apology = await telegram.wait_for(lambda c: c.method == "sendMessage" and "Sorry" in c.params["text"])
    assert [int(a.params["chat_id"]) for a in attempts] == [60, 60]
    assert "Vietnamese" in delivered["text"]
    assert attempts[1].at - attempts[0].at >= 1.0  # waited for retry_after
    assert all("Recorded" in edit.params["text"] for edit in edits)  # the same edit, twice: the second took
    assert [c.params["text"] == apology.params["text"] for c in telegram.sent("sendMessage")][-2:] == [False, True]
    assert len([c for c in telegram.sent("sendMessage") if int(c.params["chat_id"]) == 61]) == 2  # guess, apology


async def test_a_reply_lost_after_it_was_sent_is_not_sent_twice(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
    async with running_bot(settings, predictors):
        telegram.disconnect_next("sendMessage")  # Telegram delivers the guess, then the connection drops
        telegram.inject_message(62, "Nguyen")
        await telegram.wait_for(lambda c: c.method == "sendMessage" and "Sorry" in c.params["text"], timeout=15)
        telegram.inject_message(63, "Nguyen")  # and the bot goes on
        await telegram.wait_for(lambda c: c.method == "sendMessage" and int(c.params["chat_id"]) == 63)
    guesses = [c for c in telegram.calls if c.method == "sendMessage" and int(c.params["chat_id"]) == 62]
    assert ["Vietnamese" in c.params["text"] for c in guesses] == [True, False]  # the guess once, then an apology


async def test_a_failing_update_gets_an_apology_and_the_bot_lives_on(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nameorigin.updates")
    async with running_bot(settings, predictors) as application:
        telegram.fail_next("sendMessage", 400)  # the reply itself is rejected: the handler raises
        telegram.inject_message(70, "Rossi")
        apology = await telegram.wait_for(lambda c: c.method == "sendMessage" and "Sorry" in c.params["text"])
        assert int(apology.params["chat_id"]) == 70
        telegram.inject_message(71, "Rossi")
        await telegram.wait_for(lambda c: c.method == "sendMessage" and int(c.params["chat_id"]) == 71)
        assert application.running
    await asyncio.sleep(0)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "nameorigin.updates"]
    assert [(line["kind"], line["outcome"]) for line in lines] == [("message", "error"), ("message", "ok")]
    users = {line["user"] for line in lines}
    assert len(users) == 2 and all(len(user) == 16 and not user.isdigit() for user in users)  # keyed hashes


async def test_a_failing_button_press_is_answered_with_an_apology(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        telegram.inject_message(80, "Rossi")
        reply = await telegram.wait_for(lambda c: c.method == "sendMessage" and int(c.params["chat_id"]) == 80)
        confirm = reply.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        # The verdict's write fails inside the service, before the press is answered.
        with sqlite3.connect(settings.database_url.split("///", 1)[1]) as connection:
            connection.execute("DROP TABLE corrections")
        telegram.inject_callback(80, 80, telegram.last_bot_message_id(80), confirm)
        answer = await telegram.wait_for(lambda c: c.method == "answerCallbackQuery")
        assert "Sorry, something went wrong" in answer.params["text"]
        assert answer.params.get("show_alert") in (True, "true", "True")
        await asyncio.sleep(0.2)
        assert not [c for c in telegram.sent("sendMessage") if "Sorry" in c.params["text"]]  # not twice


async def test_button_presses_and_stats_are_rate_limited(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    settings = settings_for(telegram, tmp_path, guesses_per_minute=2, button_presses_per_minute=3)
    async with running_bot(settings, predictors):
        telegram.inject_message(70, "Rossi")
        reply = await telegram.wait_for(reply_to(70))
        message_id = telegram.last_bot_message_id(70)
        languages = [data for text, data in buttons(reply) if data.startswith("v:")]
        for data in (languages * 3)[:5]:
            telegram.inject_callback(70, 70, message_id, data)
        answers = await telegram.wait_for_count("answerCallbackQuery", 5)
        refused = [a for a in answers if "Recorded" not in a.params.get("text", "")]
        told = [a.params.get("text") for a in refused]
        assert len(told) == 2 and told.count(PRESSING_TOO_FAST) == 1  # told once, then quiet
        assert await rows(settings, "SELECT COUNT(*) FROM corrections") == [(1,)]  # one row, updated
        for _ in range(2):  # the guess took one of the two messages a minute
            telegram.inject_message(70, "/stats")
        replies = await telegram.wait_for_count("sendMessage", 3)
    assert sum("faster than I can take" in r.params["text"] for r in replies) == 1
