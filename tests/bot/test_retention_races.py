"""GUESS_RETENTION_DAYS against a verdict given at the same moment: a recorded verdict is never lost."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db import repository
from bot.service import GuessService, Predictors
from tests.bot.test_retention import NOW, store
from tests.databases import fetch


async def _wait_until_blocked(sessions: async_sessionmaker[AsyncSession], task: asyncio.Task[object]) -> None:
    """Until ``task`` is done or waits on a row lock (PostgreSQL)."""
    for _ in range(200):
        if task.done():
            return
        async with sessions() as session:
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the task neither ended nor waited for a lock")


@pytest.fixture
async def old_guess(
    sessions: async_sessionmaker[AsyncSession], database_url: str, predictors: Predictors
) -> tuple[GuessService, int]:
    """A service on PostgreSQL, and the id of a 40-day-old guess without a verdict."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: a purge and a verdict cannot interleave")
    ids = await store(sessions, {"Rossi": 40})
    return GuessService(predictors=predictors, sessions=sessions), ids["Rossi"]


async def test_a_verdict_committed_while_the_purge_waits_for_it_is_kept(
    sessions: async_sessionmaker[AsyncSession], database_url: str, old_guess: tuple[GuessService, int]
) -> None:
    service, guess_id = old_guess
    # A press under way: its correction is inserted, not yet committed (as in record_verdict's transaction).
    async with sessions.begin() as verdict:
        guess = await repository.get_guess(session=verdict, guess_id=guess_id)
        assert guess is not None
        await repository.upsert_correction(session=verdict, guess=guess, user_id=8, language="Italian")
        purge = asyncio.create_task(service.purge_unrated_guesses(before=NOW - timedelta(days=30)))
        await _wait_until_blocked(sessions, purge)
    # The verdict committed: the user was told "Recorded". The purge must now leave the guess and the verdict.
    await purge
    assert await fetch(database_url, "SELECT user_id, language FROM corrections") == [(8, "Italian")]
    assert await fetch(database_url, "SELECT surname FROM guesses") == [("Rossi",)]


async def test_a_press_on_a_guess_the_purge_is_deleting_is_told_the_guess_is_gone(
    sessions: async_sessionmaker[AsyncSession], old_guess: tuple[GuessService, int]
) -> None:
    service, guess_id = old_guess
    before = NOW - timedelta(days=30)
    async with sessions.begin() as purge:  # the purge's DELETE done, its COMMIT not yet
        assert await repository.delete_unrated_guesses(session=purge, before=before, limit=10) == 1
        press = asyncio.create_task(service.record_verdict(guess_id=guess_id, chat_id=7, user_id=8, language="Italian"))
        await _wait_until_blocked(sessions, press)
    verdict = await press  # README: "a press on such an answer's buttons is told the guess is gone"
    assert getattr(verdict, "reason", None) == "I can't find that guess any more. Send the name again?"


async def test_a_purge_skips_a_guess_a_verdict_holds_rather_than_wait_for_it(
    sessions: async_sessionmaker[AsyncSession], database_url: str, old_guess: tuple[GuessService, int]
) -> None:
    service, guess_id = old_guess
    await store(sessions, {"Novak": 40})
    async with sessions.begin() as verdict:  # a press under way on Rossi's answer
        guess = await repository.get_guess(session=verdict, guess_id=guess_id, lock=True)
        assert guess is not None
        await repository.upsert_correction(session=verdict, guess=guess, user_id=8, language="Italian")
        purge = asyncio.create_task(service.purge_unrated_guesses(before=NOW - timedelta(days=30)))
        await _wait_until_blocked(sessions, purge)
        finished_first = purge.done()
    # Waiting would hold up the press, and every other press on the (up to 1000) guesses its batch has locked.
    assert finished_first
    assert await purge == 1
    assert await fetch(database_url, "SELECT surname FROM guesses") == [("Rossi",)]
