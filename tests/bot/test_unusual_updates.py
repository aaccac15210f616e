"""Updates that are not a plain new message: edits, floods, anonymous admins, other bots' commands, lists."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from bot.handlers import PRESSING_TOO_FAST, SLOW_DOWN
from bot.service import Predictors
from bot.update_log import UPDATE_LOGGER
from core.data import LANGUAGES
from tests.bot.conftest import running_bot, settings_for
from tests.databases import fetch
from tests.fake_telegram import Call, FakeTelegram

SCOTTISH = LANGUAGES.index("Scottish")
GROUP_ANONYMOUS_BOT = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}


@pytest.fixture(autouse=True)
def update_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=UPDATE_LOGGER)


async def handled(caplog: pytest.LogCaptureFixture, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The per-update log lines, once ``count`` updates have been handled (each logs one line when done)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == UPDATE_LOGGER]
        if len(lines) >= count:
            return lines
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(lines)} of {count} updates handled")
        await asyncio.sleep(0.02)


def message(user: dict[str, Any], chat_id: int, text: str, **extra: Any) -> dict[str, Any]:
    """A message object as Telegram sends it, with a command entity when ``text`` starts with one."""
    body: dict[str, Any] = {
        "message_id": 10_000 + chat_id % 1000,
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "title": "chat"},
        "from": user,
        "text": text,
        **extra,
    }
    if text.startswith("/"):
        body["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return body


def texts_to(telegram: FakeTelegram, chat_id: int) -> list[str]:
    return [str(c.params["text"]) for c in telegram.sent("sendMessage", chat_id=chat_id)]


async def test_edits_and_business_messages_are_not_new_requests(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    admin = telegram.user(1)
    async with running_bot(settings, predictors):
        telegram.inject({"edited_message": message(telegram.user(7), 7, "Rosso", edit_date=int(time.time()))})
        telegram.inject({"edited_message": message(telegram.user(7), -100700, "/guess Nakamura")})
        telegram.inject({"edited_message": message(admin, 1, "/retrain")})  # a second run, or a second rollback
        telegram.inject({"business_message": message(telegram.user(7), 8, "Rossi", business_connection_id="bc1")})
        telegram.inject_message(9, "Rossi")
        lines = await handled(caplog, 5)
    assert texts_to(telegram, 7) == texts_to(telegram, -100700) == texts_to(telegram, 1) == texts_to(telegram, 8) == []
    assert len(texts_to(telegram, 9)) == 1
    assert [line["kind"] for line in lines].count("other") == 4
    assert not (settings.model_dir / ".finetune.lock").exists()  # /retrain never started a run
    assert await fetch(settings.database_url, "SELECT user_id FROM guesses") == [(9,)]


async def test_a_flood_of_refused_requests_gets_one_notice(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path, guesses_per_minute=3, button_presses_per_minute=2)
    async with running_bot(settings, predictors):
        for text in ["Rossi"] * 8 + ["/help", "/stats", "/compare Rossi", "/compare", "/guess"]:
            telegram.inject_message(40, text)
        await handled(caplog, 13)
        replies = texts_to(telegram, 40)
        message_id, confirm = first_answer(telegram, 40)
        for _ in range(5):
            telegram.inject_callback(40, 40, message_id, confirm)
        await handled(caplog, 18)
    assert len(replies) == 4 and replies.count(SLOW_DOWN) == 1  # three answers, one notice, then quiet
    assert await fetch(settings.database_url, "SELECT COUNT(*) FROM guesses") == [(3,)]
    answers = [(c.params.get("text"), c.params.get("show_alert")) for c in telegram.sent("answerCallbackQuery")]
    assert len(answers) == 5  # every press is answered, or its button spins
    assert [text for text, _ in answers].count(PRESSING_TOO_FAST) == 1


def first_answer(telegram: FakeTelegram, chat_id: int) -> tuple[int, str]:
    """The id of the first guess answered in ``chat_id`` and its ✅ button's data.

    Not simply the first message: replies to concurrent updates (an answer, a notice) go out in any order.
    """
    message_id = min(key[1] for key, m in telegram.messages.items() if key[0] == chat_id and "reply_markup" in m)
    return message_id, telegram.messages[(chat_id, message_id)]["reply_markup"]["inline_keyboard"][0][0][
        "callback_data"
    ]


async def first_reply(telegram: FakeTelegram, chat_id: int, name: str) -> Call:
    """Send ``name`` in a private chat and wait for the answer: the first message of the test."""
    telegram.inject_message(chat_id, name)
    [reply] = await telegram.wait_for_count("sendMessage", 1)
    return reply


def confirm_button(reply: Call) -> str:
    """The callback data of a guess's first button: ✅, its top language."""
    return str(reply.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"])


async def test_anonymous_admins_of_different_groups_have_limits_of_their_own(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path, guesses_per_minute=2)
    async with running_bot(settings, predictors):
        for group in (-100801, -100802):
            for name in ("Rossi", "Nakamura"):
                sent_as = {"id": group, "type": "supergroup", "title": "chat"}
                telegram.inject({"message": message(GROUP_ANONYMOUS_BOT, group, f"/guess {name}", sender_chat=sent_as)})
        await handled(caplog, 4)
    for group in (-100801, -100802):
        assert [SLOW_DOWN in text for text in texts_to(telegram, group)] == [False, False]


async def test_admin_commands_from_others_are_refused_in_private_and_ignored_in_groups(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        for _ in range(3):  # possibly meant for another bot in the group: never a reply per message
            telegram.inject_message(5, "/retrain", chat_id=-100500)
        telegram.inject_message(5, "/models")
        await handled(caplog, 4)
    assert texts_to(telegram, -100500) == []
    assert ["only the bot's admins" in text for text in texts_to(telegram, 5)] == [True]


async def test_only_commands_for_this_bot_are_logged_as_commands(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        telegram.inject_message(6, "/guess@OtherBot Rossi", chat_id=-100600)
        telegram.inject_message(6, "/guess@nameorigin_bot Rossi", chat_id=-100600)
        lines = await handled(caplog, 2)
    assert sorted(line.get("command", line["kind"]) for line in lines) == ["/guess", "message"]
    assert len(texts_to(telegram, -100600)) == 1


async def test_a_stored_verdict_whose_message_cannot_be_updated_gets_no_apology(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        reply = await first_reply(telegram, 70, "Rossi")
        telegram.fail_next("editMessageText", 502, times=20)  # Telegram cannot update the message for now
        telegram.inject_callback(70, 70, telegram.last_bot_message_id(70), confirm_button(reply))
        await handled(caplog, 2, timeout=60)
    [answer] = telegram.sent("answerCallbackQuery")
    assert answer.params["text"] == "Recorded: Italian is right. Thank you!"
    assert len(texts_to(telegram, 70)) == 1  # no "Sorry, something went wrong... try again"
    assert await fetch(settings.database_url, "SELECT user_id, confirmed FROM corrections") == [(70, 1)]


async def test_a_list_after_the_guess_command_is_answered_line_by_line(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        telegram.inject_message(8, "/guess Nakamura\nRossi", chat_id=-100900)
        await handled(caplog, 1)
    replies = texts_to(telegram, -100900)
    assert ["<b>Nakamura</b>" in replies[0], "<b>Rossi</b>" in replies[-1], len(replies)] == [True, True, 2]


@pytest.mark.parametrize("name", ["Rossi", "O'Brien"])  # PTB writes ' back as &#x27;, the bot does not
async def test_the_same_verdict_again_edits_nothing(
    name: str, telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        reply = await first_reply(telegram, 71, name)
        guess_id = confirm_button(reply).split(":")[1]
        # Scottish, from the full keyboard: its "Recorded" line repeats the name, apostrophe and all.
        for presses in (1, 2, 3):  # handled one after another: each press sees the message as the last left it
            telegram.inject_callback(71, 71, telegram.last_bot_message_id(71), f"v:{guess_id}:{SCOTTISH}")
            await handled(caplog, 1 + presses)
    assert len(telegram.sent("answerCallbackQuery")) == 3
    assert len(telegram.sent("editMessageText")) == 1  # a group's 20 messages a minute are not spent on no-ops
    assert f"{name} is Scottish" in telegram.messages[(71, telegram.last_bot_message_id(71))]["text"]


async def test_a_list_stops_at_the_limit_with_one_notice_and_five_names_need_no_note(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path, guesses_per_minute=2)
    async with running_bot(settings, predictors):
        telegram.inject_message(80, "Rossi\nNakamura\nSmith\nIvanov\nNguyen")
        await handled(caplog, 1)
    assert [SLOW_DOWN in text for text in texts_to(telegram, 80)] == [False, False, True]  # not one per line left
    settings = settings_for(telegram, tmp_path / "five", guesses_per_minute=5)
    async with running_bot(settings, predictors):
        telegram.inject_message(81, "Rossi\nNakamura\nSmith\nIvanov\nNguyen")
        await handled(caplog, 2)
    assert len(texts_to(telegram, 81)) == 5  # all answered: no "more than I answer" note


async def test_a_press_on_a_message_that_changed_since_still_redraws_it(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        reply = await first_reply(telegram, 72, "Rossi")
        key = (72, telegram.last_bot_message_id(72))
        confirm = confirm_button(reply)
        telegram.inject_callback(72, *key, confirm)  # ✅ Italian
        await handled(caplog, 2)
        showing_italian = copy.deepcopy(telegram.messages[key])
        telegram.inject_callback(72, *key, f"v:{confirm.split(':')[1]}:{LANGUAGES.index('Arabic')}")
        await handled(caplog, 3)
        # ✅ Italian again, pressed before the Arabic edit reached the user: the press carries the old message.
        showing_arabic, telegram.messages[key] = telegram.messages[key], showing_italian
        telegram.inject_callback(72, *key, confirm)
        telegram.messages[key] = showing_arabic
        await handled(caplog, 4)
    assert telegram.messages[key]["text"].endswith("✅ Recorded: Italian is right. Thank you!")  # as stored
    assert await fetch(settings.database_url, "SELECT language FROM corrections") == [("Italian",)]


async def test_a_flood_wait_holds_back_its_chat_and_no_other(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        reply = await first_reply(telegram, 90, "Rossi")
        telegram.fail_next("editMessageText", 429, retry_after=3)  # Telegram: that chat must wait 3 s
        telegram.inject_callback(90, 90, telegram.last_bot_message_id(90), confirm_button(reply))
        await telegram.wait_for_count("editMessageText", 1)
        telegram.inject_message(90, "Tanaka")  # to the waiting chat: held back, not sent into the wait
        telegram.inject_message(91, "Nakamura")
        await telegram.wait_for(lambda c: c.method == "sendMessage" and int(c.params["chat_id"]) == 91, timeout=2)
        # Chat 91 is answered while chat 90 still waits: neither its edit nor its new answer went out.
        assert (len(telegram.sent("editMessageText")), len(telegram.sent("sendMessage", chat_id=90))) == (1, 1)
        await telegram.wait_for_count("editMessageText", 2, timeout=10)  # both go out after the wait
        await telegram.wait_for(lambda c: c.method == "sendMessage" and "Tanaka" in c.params["text"], timeout=10)


async def test_a_list_skips_blank_lines_and_goes_on_past_a_name_it_cannot_classify(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        telegram.inject_message(82, "Rossi\n   \n12345\n\t\nNakamura")
        await handled(caplog, 1)
    replies = texts_to(telegram, 82)
    assert len(replies) == 3  # a line of spaces is no name: no "I can't classify that: empty input"
    assert "<b>Rossi</b>" in replies[0] and "<b>Nakamura</b>" in replies[2]
    assert replies[1].startswith("I can't classify “12345”: no letters")  # which line of the list it is about
    assert await fetch(settings.database_url, "SELECT surname FROM guesses ORDER BY id") == [("Rossi",), ("Nakamura",)]


async def test_a_long_list_cut_short_by_the_limit_gets_no_note_about_the_rest(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path, guesses_per_minute=2)
    async with running_bot(settings, predictors):
        telegram.inject_message(83, "Rossi\nNakamura\nSmith\nIvanov\nNguyen\nMüller\nDubois")
        await handled(caplog, 1)
    replies = texts_to(telegram, 83)
    assert len(replies) == 3 and replies[-1] == SLOW_DOWN  # two answers, the notice, and nothing after it
    assert await fetch(settings.database_url, "SELECT COUNT(*) FROM guesses") == [(2,)]


async def test_switching_keyboards_answers_every_press_and_a_double_press_gets_no_apology(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        reply = await first_reply(telegram, 73, "Rossi")
        guess_id = confirm_button(reply).split(":")[1]
        other = str(reply.params["reply_markup"]["inline_keyboard"][-1][0]["callback_data"])
        key = (73, telegram.last_bot_message_id(73))
        telegram.inject_callback(73, *key, other)
        await handled(caplog, 2)
        assert len(telegram.messages[key]["reply_markup"]["inline_keyboard"]) > 3  # the full keyboard
        telegram.inject_callback(73, *key, other)  # pressed twice: Telegram says "message is not modified"
        await handled(caplog, 3)
        back = telegram.messages[key]["reply_markup"]["inline_keyboard"][-1][0]["callback_data"]
        telegram.inject_callback(73, *key, back)
        await handled(caplog, 4)
    assert telegram.messages[key]["reply_markup"] == reply.params["reply_markup"]  # the short one again
    answers = telegram.sent("answerCallbackQuery")
    assert sorted(a.params["callback_query_id"] for a in answers) == ["1", "2", "3"]  # none left spinning
    assert texts_to(telegram, 73) == [reply.params["text"]]  # no "Sorry, something went wrong"
    assert guess_id == back.split(":")[1]


async def test_the_same_verdict_again_shows_it_when_the_first_edit_failed(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        reply = await first_reply(telegram, 74, "Rossi")
        key = (74, telegram.last_bot_message_id(74))
        telegram.fail_next("editMessageText", 400, description="Bad Request: something else")
        telegram.inject_callback(74, *key, confirm_button(reply))
        await handled(caplog, 2)
        assert "Recorded" not in telegram.messages[key]["text"]  # stored, but the message still asks
        telegram.inject_callback(74, *key, confirm_button(reply))  # the same choice again, by the same user
        await handled(caplog, 3)
    assert len(telegram.sent("editMessageText")) == 2
    assert telegram.messages[key]["text"].endswith("✅ Recorded: Italian is right. Thank you!")
    assert await fetch(settings.database_url, "SELECT user_id, language FROM corrections") == [(74, "Italian")]


async def test_a_group_that_became_a_supergroup_gets_no_apology_in_the_old_chat(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path)
    migrated = {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": -1001234567890},
    }
    telegram._failures["sendMessage"] = [(400, migrated)] * 2  # the answer, and an apology if one were tried
    async with running_bot(settings, predictors):
        telegram.inject_message(84, "/guess Rossi", chat_id=-84)
        [line] = await handled(caplog, 1)
    assert line["outcome"] != "ok"
    assert len(telegram.sent("sendMessage", chat_id=-84)) == 1  # no one to tell there: no "Sorry" sent into the void
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # not an error of the bot's
