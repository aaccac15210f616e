"""Button presses when Telegram is slow: the message ends up showing what is stored, and no false apology."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.keyed_locks import KeyedLocks
from bot.service import Predictors
from tests.bot.conftest import running_bot, settings_for
from tests.bot.test_e2e import buttons, reply_to, rows
from tests.fake_telegram import Call, FakeTelegram

# PTB's default read time-out is 5 s: an answer delayed longer fails with TimedOut, which is never retried.
PAST_READ_TIMEOUT_S = 6.0


async def guessed(telegram: FakeTelegram, chat_id: int, name: str) -> tuple[Call, int]:
    """Send ``name`` in a private chat; the bot's reply and its message id."""
    telegram.inject_message(chat_id, name)
    reply = await telegram.wait_for(reply_to(chat_id))
    return reply, telegram.last_bot_message_id(chat_id)


async def test_a_press_whose_answer_is_slow_does_not_overtake_a_later_press(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        reply, message_id = await guessed(telegram, 20, "Rossi")
        (first_text, first), (second_text, second) = buttons(reply)[:2]
        # The user presses the second language, then changes their mind; Telegram takes a second to take
        # the first press's answer, so that press's redraw would come after the second's.
        telegram.delay_next("answerCallbackQuery", 1.0)
        telegram.inject_callback(20, 20, message_id, second)
        await telegram.wait_for(lambda c: c.method == "answerCallbackQuery")
        telegram.inject_callback(20, 20, message_id, first)
        await telegram.wait_for_count("editMessageText", 2)
    chosen = first_text.removeprefix("✅ ")
    assert await rows(settings, "SELECT language FROM corrections") == [(chosen,)]
    shown = telegram.messages[(20, message_id)]["text"].splitlines()[-1]
    assert chosen in shown and second_text not in shown, shown


async def test_a_recorded_press_whose_answer_times_out_is_still_shown_and_not_apologized_for(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        reply, message_id = await guessed(telegram, 20, "Rossi")
        telegram.delay_next("answerCallbackQuery", PAST_READ_TIMEOUT_S)
        telegram.inject_callback(20, 20, message_id, buttons(reply)[0][1])
        edit = await telegram.wait_for(lambda c: c.method == "editMessageText", timeout=15)
    assert "Recorded: Italian" in edit.params["text"]
    assert await rows(settings, "SELECT language FROM corrections") == [("Italian",)]
    answers = [call.params.get("text") for call in telegram.sent("answerCallbackQuery")]
    assert answers == ["Recorded: Italian is right. Thank you!"]  # the one that timed out; no apology after it
    assert [call for call in telegram.sent("sendMessage") if "went wrong" in call.params["text"]] == []


async def test_keyed_locks_run_one_key_in_turn_others_alongside_and_are_forgotten() -> None:
    locks, events = KeyedLocks(), []

    async def work(key: str, name: str, seconds: float) -> None:
        async with locks.hold(key):
            events.append(f"{name} in")
            await asyncio.sleep(seconds)
            events.append(f"{name} out")

    await asyncio.gather(work("a", "a1", 0.05), work("a", "a2", 0), work("b", "b1", 0.01))
    assert events == ["a1 in", "b1 in", "b1 out", "a1 out", "a2 in", "a2 out"]
    assert len(locks) == 0
    try:
        async with locks.hold("c"):
            raise ValueError
    except ValueError:
        pass
    assert len(locks) == 0
