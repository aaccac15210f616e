"""A press is stored and answered at once; its message is redrawn apart from it, once however often it was pressed
while waiting for its chat's edit limit, and as the last press left it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot import app as bot_app
from bot.outgoing import RetryingRateLimiter
from bot.redraws import MessageRedraws
from bot.service import Predictors
from bot.update_log import UPDATE_LOGGER
from tests.bot.conftest import running_bot, settings_for
from tests.bot.test_update_processor import EDITS, guess_in_group
from tests.databases import fetch
from tests.fake_telegram import FakeTelegram


async def test_a_message_waiting_for_its_turn_is_drawn_once_as_last_asked_and_chats_do_not_wait_on_each_other() -> None:
    redraws = MessageRedraws()
    drawn: list[str] = []
    gate = asyncio.Event()

    def drawing(label: str, wait: bool = False) -> object:
        async def redraw() -> None:
            if wait:
                await gate.wait()  # a chat whose edit budget is spent
            drawn.append(label)

        return redraw

    redraws.request(1, "a", drawing("a1", wait=True))
    await asyncio.sleep(0)  # drawing it now: in progress until the gate opens
    redraws.request(1, "b", drawing("b1"))
    redraws.request(1, "a", drawing("a2"))  # "a" is in progress: a second redraw of it waits its turn
    redraws.request(1, "b", drawing("b2"))  # replaces b1, keeping its place before a2
    redraws.request(1, "a", drawing("a3"))  # replaces a2
    redraws.request(2, "c", drawing("c1"))  # another chat
    await asyncio.sleep(0.01)
    assert drawn == ["c1"]
    assert redraws.waiting() == 2
    gate.set()
    await redraws.finish(timeout=5)
    assert drawn == ["c1", "a1", "b2", "a3"]
    assert redraws.waiting() == 0


async def test_a_chat_with_too_many_messages_waiting_leaves_the_next_ones_as_they_are(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redraws = MessageRedraws(max_waiting_per_chat=2)
    gate, drawn = asyncio.Event(), []

    def drawing(label: str) -> object:
        async def redraw() -> None:
            await gate.wait()
            drawn.append(label)

        return redraw

    for message in "abcd":  # "a" is taken at once; b and c wait; d finds the line full
        redraws.request(1, message, drawing(message))
        await asyncio.sleep(0)
    redraws.request(1, "b", drawing("b2"))  # one already waiting is still brought up to date
    gate.set()
    await redraws.finish(timeout=5)
    assert drawn == ["a", "b2", "c"]
    assert [r.getMessage() for r in caplog.records] == [
        "a message was left as it was: its chat has too many redraws waiting"
    ]


async def test_stopping_waits_a_while_for_waiting_redraws_then_says_how_many_were_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redraws = MessageRedraws()
    forever = asyncio.Event()

    async def stuck() -> None:
        await forever.wait()

    redraws.request(1, "a", stuck)
    redraws.request(1, "b", stuck)
    await asyncio.sleep(0)
    await redraws.finish(timeout=0.05)
    assert caplog.messages == ["stopping before 2 messages were brought up to date"]


@pytest.fixture
def group_edits_twice_as_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """20 edits in 30 s: past them, one every 1.5 s, so a slow machine's presses still outrun the group's edits
    (at 20 in 3 s, one every 0.15 s, presses taking 2.5 s in all let 31 edits out before the last answer)."""
    monkeypatch.setattr(
        bot_app,
        "outgoing_limiter",
        lambda rate: RetryingRateLimiter(overall_max_rate=rate, group_max_rate=20, group_time_period=30),
    )


@pytest.mark.usefixtures("group_edits_twice_as_fast")
async def test_a_member_changing_their_mind_fast_in_a_group_is_answered_at_once_and_shown_last(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # Each press was answered only after the previous press's edit, at the group's pace: past the first 20, a
    # member changing their mind waited 3 s for each answer, their button spinning, and each press cost an edit.
    caplog.set_level(logging.INFO, logger=UPDATE_LOGGER)
    settings = settings_for(telegram, tmp_path, button_presses_per_minute=1000)
    group, presses = -100800, 40
    async with running_bot(settings, predictors):
        message_id, confirm = await guess_in_group(telegram, caplog, group)
        keyboard = telegram.messages[(group, message_id)]["reply_markup"]["inline_keyboard"]
        choices = [str(row[0]["callback_data"]) for row in keyboard[:2]]  # ✅ Italian, and the second language
        for press in range(presses):
            telegram.inject_callback(5, group, message_id, choices[press % 2])
            await telegram.wait_for_count("answerCallbackQuery", press + 1, timeout=30)
        edits_by_the_last_answer = sum(1 for call in telegram.calls if call.method in EDITS)
        answers = [call.params.get("text") for call in telegram.sent("answerCallbackQuery")]
        assert all(str(text).startswith("Recorded: ") for text in answers), answers
        last = str(answers[-1])[len("Recorded: ") :]
        await telegram.wait_for(lambda call: call.method in EDITS and last in str(call.params.get("text")), 30)
        await asyncio.sleep(0.5)  # nothing drawn after it
    # The group's first 20 edits go out at once; after those, presses were answered before their edits went out.
    assert edits_by_the_last_answer < presses - 10, f"{edits_by_the_last_answer} edits before the last answer"
    edits = [call for call in telegram.calls if call.method in EDITS]
    assert len(edits) < presses - 10, f"{len(edits)} edits for {presses} presses: waiting ones were not drawn once"
    assert last in str(edits[-1].params["text"]) and last in telegram.messages[(group, message_id)]["text"]
    stored = await fetch(settings.database_url, "SELECT language FROM corrections")
    assert len(stored) == 1 and str(stored[0][0]) in last


async def test_a_press_changing_nothing_while_its_message_waits_for_a_redraw_is_still_shown_last(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # A press repeating its user's choice on a message that shows it drew nothing: an edit would change nothing.
    # But the message Telegram sent with it may be about to change: another member's redraw was still on its way,
    # landed after it, and the message went on showing that member's choice, not the last press's.
    caplog.set_level(logging.INFO, logger=UPDATE_LOGGER)
    group = -100700
    async with running_bot(settings_for(telegram, tmp_path), predictors):
        message_id, confirm = await guess_in_group(telegram, caplog, group)
        keyboard = telegram.messages[(group, message_id)]["reply_markup"]["inline_keyboard"]
        other_language = str(keyboard[1][0]["callback_data"])
        telegram.inject_callback(5, group, message_id, confirm)
        await telegram.wait_for(lambda call: call.method == "editMessageText")
        telegram.delay_next("editMessageText", 1.0)  # the next redraw is under way for a second
        telegram.inject_callback(6, group, message_id, other_language)
        await telegram.wait_for_count("answerCallbackQuery", 2)
        telegram.inject_callback(5, group, message_id, confirm)  # the message still shows user 5's choice
        answers = await telegram.wait_for_count("answerCallbackQuery", 3)
    assert "is right" in str(answers[-1].params.get("text"))
    assert "✅ Recorded:" in telegram.messages[(group, message_id)]["text"], "the last press is not what it shows"


async def test_a_keyboard_switched_while_a_verdict_waits_to_be_shown_keeps_the_verdict(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # "Other…" pressed while the message still waited to show a verdict (its chat's edits busy) took the verdict's
    # place in line: only the keyboard was redrawn, and the message never said what was recorded.
    caplog.set_level(logging.INFO, logger=UPDATE_LOGGER)
    group = -100750
    async with running_bot(settings_for(telegram, tmp_path), predictors):
        first, confirm_first = await guess_in_group(telegram, caplog, group)
        telegram.inject_message(5, "/guess Nakamura", chat_id=group)
        await telegram.wait_for_count("sendMessage", 2)
        second = telegram.last_bot_message_id(group)
        confirm = str(telegram.messages[(group, second)]["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        telegram.delay_next("editMessageText", 1.0)  # the group's edits are busy for a second
        telegram.inject_callback(5, group, first, confirm_first)
        await telegram.wait_for_count("answerCallbackQuery", 1)
        telegram.inject_callback(6, group, second, confirm)  # its redraw waits for the first message's
        await telegram.wait_for_count("answerCallbackQuery", 2)
        telegram.inject_callback(7, group, second, f"o:{confirm.split(':')[1]}")  # "Other…"
        await telegram.wait_for_count("answerCallbackQuery", 3)
    shown = telegram.messages[(group, second)]
    assert "✅ Recorded:" in shown["text"], "the verdict was never shown"
    assert shown["reply_markup"]["inline_keyboard"][-1][0]["text"] == "« Back", "the keyboard pressed for is not shown"
