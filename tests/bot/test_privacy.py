"""/privacy says what the bot keeps; /forget shows a user what it keeps about them and, confirmed, deletes it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.db import repository
from bot.db.repository import Stats
from bot.service import GuessService, Predictors
from bot.views import FORGET_AS_CHAT, FORGET_IN_PRIVATE, FORGET_USAGE
from core.predict import Guess, Predictor, Rejected
from tests.bot.conftest import running_bot
from tests.bot.test_unusual_updates import message
from tests.databases import fetch
from tests.fake_telegram import FakeTelegram

GROUP = -100900


async def reply_to(telegram: FakeTelegram, user_id: int, text: str, chat_id: int | None = None) -> str:
    """Send ``text`` as ``user_id`` and wait for the bot's reply (the tests here send one thing at a time)."""
    chat = user_id if chat_id is None else chat_id
    before = len(telegram.sent("sendMessage"))
    telegram.inject_message(user_id, text, chat_id=chat)
    reply = (await telegram.wait_for_count("sendMessage", before + 1))[before]
    assert int(reply.params["chat_id"]) == chat
    return str(reply.params["text"])


async def press_first_button(telegram: FakeTelegram, user_id: int, chat_id: int) -> None:
    """``user_id`` confirms the bot's last answer in ``chat_id``, and the press is answered."""
    message_id = telegram.last_bot_message_id(chat_id)
    data = telegram.messages[(chat_id, message_id)]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    before = len(telegram.sent("answerCallbackQuery"))
    telegram.inject_callback(user_id, chat_id, message_id, str(data))
    await telegram.wait_for_count("answerCallbackQuery", before + 1, timeout=30)


async def rows(settings: Settings) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """(user_id, surname) of every guess and (user_id, surname) of every verdict, sorted."""
    guesses = await fetch(settings.database_url, "SELECT user_id, surname FROM guesses ORDER BY user_id, surname")
    verdicts = await fetch(
        settings.database_url,
        "SELECT c.user_id, g.surname FROM corrections c JOIN guesses g ON g.id = c.guess_id "
        "ORDER BY c.user_id, g.surname",
    )
    return guesses, verdicts


async def test_forget_shows_what_is_kept_then_deletes_it_and_leaves_everyone_else_s(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
    async with running_bot(settings, predictors):
        await reply_to(telegram, 7, "Rossi")
        await reply_to(telegram, 7, "Nakamura")
        await press_first_button(telegram, 7, 7)
        await reply_to(telegram, 7, "/guess Schmidt", GROUP)
        await press_first_button(telegram, 9, GROUP)  # another member's verdict on user 7's guess
        await reply_to(telegram, 8, "/guess Novak", GROUP)
        await press_first_button(telegram, 7, GROUP)  # user 7's verdict on another's guess
        await press_first_button(telegram, 8, GROUP)

        preview = await reply_to(telegram, 7, "/forget")
        assert preview.startswith("I keep 3 names you sent (with my answers) and 2 answers you confirmed or corrected.")
        assert preview.endswith("To delete all of it, send: /forget confirm")
        assert await reply_to(telegram, 7, "/forget everything") == FORGET_USAGE
        assert len((await rows(settings))[0]) == 4  # nothing deleted yet
        assert "Guesses: 4 from 2 users\nCorrections and confirmations: 4\n" in await reply_to(telegram, 8, "/stats")

        # In a group, the counts would be everyone's to read: neither shown nor acted on there.
        assert await reply_to(telegram, 7, "/forget confirm", GROUP) == FORGET_IN_PRIVATE
        assert len((await rows(settings))[0]) == 4
        done = await reply_to(telegram, 7, "/forget confirm")
        assert done.startswith("Deleted 3 names you sent (with my answers) and 2 answers you confirmed or corrected.")
        assert await rows(settings) == ([(8, "Novak")], [(8, "Novak")])
        assert await reply_to(telegram, 7, "/forget") == "I keep nothing about you."
        stats = await reply_to(telegram, 8, "/stats")  # counted again, not the counts from before
        assert "Guesses: 1 from 1 user\nCorrections and confirmations: 1\n" in stats


async def test_privacy_says_what_is_kept_and_how_to_delete_it(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
    async with running_bot(settings, predictors):
        text = await reply_to(telegram, 7, "/privacy")
        help_text = await reply_to(telegram, 7, "/help")
    assert "each name you send me" in text and "/forget" in text
    assert "/privacy" in help_text and "/forget" in help_text


async def test_an_anonymous_admin_cannot_forget_for_every_anonymous_admin(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors
) -> None:
    # Anonymous admins of every group arrive as one user, GroupAnonymousBot: /forget confirm would delete the
    # guesses of all of them.
    anonymous = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}
    sender_chat = {"id": GROUP, "type": "supergroup", "title": "chat"}
    async with running_bot(settings, predictors):
        telegram.inject({"message": message(anonymous, GROUP, "/guess Rossi", sender_chat=sender_chat)})
        await telegram.wait_for(lambda call: call.method == "sendMessage")
        telegram.inject({"message": message(anonymous, GROUP, "/forget confirm", sender_chat=sender_chat)})
        await telegram.wait_for(lambda call: call.params.get("text") == FORGET_AS_CHAT)
    assert len((await rows(settings))[0]) == 1


async def test_a_count_taken_before_forget_is_not_shown_after_it(
    sessions: async_sessionmaker[AsyncSession], predictors: Predictors, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /forget cleared the cached counts; a /stats counting meanwhile stored its older counts after that, and
    # /stats showed the deleted names for 30 s more.
    service = GuessService(predictors=predictors, sessions=sessions)
    await service.guess(user_id=7, chat_id=7, message_id=1, text="Rossi")
    counted, release = asyncio.Event(), asyncio.Event()
    collect_stats = repository.collect_stats

    async def slow_count(*, session: AsyncSession) -> Stats:
        stats = await collect_stats(session=session)
        await session.close()  # as on PostgreSQL, where the delete does not wait for this connection
        counted.set()
        await release.wait()
        return stats

    monkeypatch.setattr(repository, "collect_stats", slow_count)
    counting = asyncio.create_task(service.stats())
    await counted.wait()
    forgetting = asyncio.create_task(service.forget(7))
    while (await service.stored_about(7)).guesses:  # deleted and committed
        await asyncio.sleep(0.01)
    release.set()
    assert (await counting).guesses == 1
    assert (await forgetting).guesses == 1
    monkeypatch.setattr(repository, "collect_stats", collect_stats)
    assert (await service.stats()).guesses == 0


class GatedPredictor:
    """The shipped GRU, answering only once ``gate`` is set: a guess caught while it is being classified."""

    def __init__(self, inner: Predictor, gate: threading.Event) -> None:
        self.inner, self.gate, self.version = inner, gate, inner.version

    def predict_many(self, texts: Sequence[str], top_k: int) -> list[Guess | Rejected]:
        self.gate.wait(timeout=30)
        return self.inner.predict_many(texts, top_k)


async def test_a_name_sent_just_before_forget_is_deleted_with_the_rest(
    sessions: async_sessionmaker[AsyncSession], predictors: Predictors
) -> None:
    # A guess still being classified was stored after the delete, and kept, though the reply said all was deleted.
    gate = threading.Event()
    gated = cast(Predictor, GatedPredictor(predictors.gru, gate))
    service = GuessService(predictors=Predictors(gru=gated, rnn=predictors.rnn), sessions=sessions)
    guessing = asyncio.create_task(service.guess(user_id=7, chat_id=7, message_id=1, text="Rossi"))
    await asyncio.sleep(0.05)  # classifying
    forgetting = asyncio.create_task(service.forget(7))
    await asyncio.sleep(0.05)
    gate.set()
    await guessing
    assert (await forgetting).guesses == 1
    assert (await service.stored_about(7)).guesses == 0
