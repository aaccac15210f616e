"""GUESS_RETENTION_DAYS: guesses no one gave a verdict on are deleted once they are that old."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import views
from bot.config import Settings, SettingsError, load_settings
from bot.db import repository
from bot.db.repository import NewGuess
from bot.retention import PURGE_JOB_NAME, GuessRetention
from bot.service import GuessService, Predictors
from tests.bot.conftest import running_bot, settings_for
from tests.bot.test_privacy import press_first_button, reply_to
from tests.databases import execute, fetch
from tests.fake_telegram import FakeTelegram

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def new_guess(user_id: int, surname: str) -> NewGuess:
    """A stored answer for ``surname``, as the service writes it."""
    return NewGuess(
        user_id=user_id, chat_id=user_id, message_id=1, raw_input=surname, surname=surname,
        top_languages=("Italian", "Spanish", "Greek"), probability=0.9, model_version="v",
    )  # fmt: skip


async def store(sessions: async_sessionmaker[AsyncSession], surnames_by_age: dict[str, float]) -> dict[str, int]:
    """Store one guess per surname, created that many days before ``NOW``; returns their ids."""
    async with sessions.begin() as session:
        names = list(surnames_by_age)
        ids = await repository.add_guesses(session=session, guesses=[new_guess(7, name) for name in names])
        for name, guess_id in zip(names, ids, strict=True):
            guess = await repository.get_guess(session=session, guess_id=guess_id)
            assert guess is not None
            guess.created_at = NOW - timedelta(days=surnames_by_age[name])
    return dict(zip(names, ids, strict=True))


async def kept(database_url: str) -> set[str]:
    """The surnames of the guesses still stored."""
    return {str(surname) for (surname,) in await fetch(database_url, "SELECT surname FROM guesses")}


async def test_only_guesses_older_than_the_cutoff_and_without_a_verdict_are_deleted(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    ids = await store(sessions, {"Rossi": 40, "Novak": 40, "Sato": 29, "Schmidt": 100})
    async with sessions.begin() as session:
        guess = await repository.get_guess(session=session, guess_id=ids["Novak"])
        assert guess is not None
        await repository.upsert_correction(session=session, guess=guess, user_id=8, language="Czech")

    async with sessions.begin() as session:
        deleted = await repository.delete_unrated_guesses(session=session, before=NOW - timedelta(days=30), limit=10)
    assert deleted == 2
    assert await kept(database_url) == {"Novak", "Sato"}  # the verdict's guess, and the recent one


async def test_a_cutoff_given_in_another_time_zone_is_the_same_moment(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    # SQLite stores times without their zone: a cutoff in Kolkata time was compared as if it were UTC, 5.5 h later.
    await store(sessions, {"Rossi": 31, "Sato": 30 - 1 / 24})  # Sato: an hour inside the 30 days
    cutoff = (NOW - timedelta(days=30)).astimezone(ZoneInfo("Asia/Kolkata"))
    async with sessions.begin() as session:
        assert await repository.delete_unrated_guesses(session=session, before=cutoff, limit=10) == 1
    assert await kept(database_url) == {"Sato"}


async def test_a_purge_deletes_in_batches_until_none_is_left(
    sessions: async_sessionmaker[AsyncSession], database_url: str, predictors: Predictors
) -> None:
    await store(sessions, {f"Name{number}": 31 for number in range(7)} | {"Recent": 1})
    service = GuessService(predictors=predictors, sessions=sessions)
    assert (await service.stats()).guesses == 8

    deleted = await service.purge_unrated_guesses(before=NOW - timedelta(days=30), batch_size=3)

    assert deleted == 7
    assert await kept(database_url) == {"Recent"}
    assert (await service.stats()).guesses == 1  # /stats does not keep counting what was deleted


async def test_a_batch_holds_at_most_its_limit_and_old_guesses_with_verdicts_do_not_end_the_purge(
    sessions: async_sessionmaker[AsyncSession], database_url: str, predictors: Predictors
) -> None:
    ids = await store(sessions, {"Rated1": 40, "Rated2": 40} | {f"Name{number}": 40 for number in range(3)})
    async with sessions.begin() as session:  # the two oldest carry verdicts
        for surname in ("Rated1", "Rated2"):
            guess = await repository.get_guess(session=session, guess_id=ids[surname])
            assert guess is not None
            await repository.upsert_correction(session=session, guess=guess, user_id=8, language="Italian")
    before = NOW - timedelta(days=30)
    async with sessions.begin() as session:
        assert await repository.delete_unrated_guesses(session=session, before=before, limit=2) == 2
    service = GuessService(predictors=predictors, sessions=sessions)
    assert await service.purge_unrated_guesses(before=before, batch_size=2) == 1
    assert await kept(database_url) == {"Rated1", "Rated2"}


async def test_a_verdict_that_appears_after_the_candidates_were_chosen_keeps_its_guess(
    sessions: async_sessionmaker[AsyncSession], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DELETE checks again: a verdict committed after the snapshot of the query that chose the candidates."""
    ids = await store(sessions, {"Rossi": 40, "Novak": 40})
    async with sessions.begin() as session:
        choose = session.scalars

        async def then_a_verdict(statement: Any, *args: Any, **kwargs: Any) -> Any:
            monkeypatch.setattr(session, "scalars", choose)  # once
            candidates = await choose(statement, *args, **kwargs)
            guess = await repository.get_guess(session=session, guess_id=ids["Novak"])
            assert guess is not None
            await repository.upsert_correction(session=session, guess=guess, user_id=8, language="Czech")
            return candidates

        monkeypatch.setattr(session, "scalars", then_a_verdict)
        deleted = await repository.delete_unrated_guesses(session=session, before=NOW - timedelta(days=30), limit=10)
    assert deleted == 1
    assert await kept(database_url) == {"Novak"}
    assert await fetch(database_url, "SELECT language FROM corrections") == [("Czech",)]


async def test_only_a_purge_that_deleted_something_shows_that_writes_work_again(
    sessions: async_sessionmaker[AsyncSession], predictors: Predictors
) -> None:
    await store(sessions, {"Rossi": 40})
    service = GuessService(predictors=predictors, sessions=sessions)
    service._write_failure = (service._clock(), "OperationalError: database or disk is full")
    assert await service.purge_unrated_guesses(before=NOW - timedelta(days=50)) == 0  # wrote nothing: proves nothing
    assert service.write_problem() == "OperationalError: database or disk is full"
    assert await service.purge_unrated_guesses(before=NOW - timedelta(days=30)) == 1
    assert service.write_problem() is None


def test_privacy_states_the_retention_in_days() -> None:
    assert "is deleted after 1 day;" in views.privacy_text(1)
    assert "is deleted after 90 days;" in views.privacy_text(90)


async def test_the_bot_purges_on_its_schedule_and_a_press_on_a_purged_answer_is_told_so(
    telegram: FakeTelegram, settings: Settings, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.model_copy(update={"guess_retention_days": 30})
    async with running_bot(settings, predictors) as application:
        await reply_to(telegram, 7, "Rossi")
        rossi = telegram.last_bot_message_id(7)
        await reply_to(telegram, 7, "Nakamura")
        await press_first_button(telegram, 7, 7)  # a verdict: Nakamura is kept however old
        await reply_to(telegram, 7, "Schmidt")  # 29 days old: kept
        for surname, days in (("Rossi", 31), ("Nakamura", 31), ("Schmidt", 29)):
            old = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")
            await execute(settings.database_url, f"UPDATE guesses SET created_at = '{old}' WHERE surname = '{surname}'")

        (job,) = application.job_queue.get_jobs_by_name(PURGE_JOB_NAME)
        assert job.job.trigger.interval == timedelta(hours=1)  # as README and the failure's log line say
        assert job.next_t is not None and job.next_t - datetime.now(UTC) <= timedelta(minutes=1)  # soon after a start
        with caplog.at_level(logging.INFO, logger="bot.retention"):
            await job.run(application)

        surnames = await fetch(settings.database_url, "SELECT surname FROM guesses ORDER BY surname")
        assert surnames == [("Nakamura",), ("Schmidt",)]
        assert "deleted 1 guess older than 30 days with no verdict" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="bot.retention"):
            await job.run(application)  # nothing left to delete: nothing to say, every hour
        assert not [record for record in caplog.records if record.name == "bot.retention"]

        data = telegram.messages[(7, rossi)]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        before = len(telegram.sent("answerCallbackQuery"))
        telegram.inject_callback(7, 7, rossi, str(data))
        (answered,) = (await telegram.wait_for_count("answerCallbackQuery", before + 1))[before:]
        assert answered.params["text"] == "I can't find that guess any more. Send the name again?"
        assert "after 30 days" in await reply_to(telegram, 7, "/privacy")
        stats = await reply_to(telegram, 7, "/stats")
        assert "Guesses: 2 from 1 user (one with no verdict is kept 30 days)\n" in stats


async def test_a_failed_purge_is_logged_in_one_line_and_tried_again_next_time(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(telegram, tmp_path, guess_retention_days=30)
    async with running_bot(settings, predictors) as application:
        await execute(settings.database_url, "DROP TABLE corrections")  # the purge's query now fails
        (job,) = application.job_queue.get_jobs_by_name(PURGE_JOB_NAME)
        with caplog.at_level(logging.INFO, logger="bot.retention"):
            await job.run(application)
        (record,) = [record for record in caplog.records if record.name == "bot.retention"]
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert record.getMessage().startswith("could not delete old guesses, will try again in 1 hour:")
        assert "no such table: corrections" in record.getMessage()
        assert application.job_queue.get_jobs_by_name(PURGE_JOB_NAME)  # still scheduled


async def test_without_a_retention_setting_nothing_is_scheduled_and_privacy_says_guesses_are_kept(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    settings = settings_for(telegram, tmp_path)
    assert settings.guess_retention_days == 0
    async with running_bot(settings, predictors) as application:
        assert application.job_queue.get_jobs_by_name(PURGE_JOB_NAME) == ()
        privacy = await reply_to(telegram, 7, "/privacy")
        assert "deleted after" not in privacy and "kept until you delete it" in privacy


async def test_a_purge_that_fails_for_another_reason_than_the_database_is_not_disguised_as_one(
    sessions: async_sessionmaker[AsyncSession], predictors: Predictors, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = GuessService(predictors=predictors, sessions=sessions)

    async def a_bug(**_: object) -> int:
        raise TypeError("a bug")

    monkeypatch.setattr(service, "purge_unrated_guesses", a_bug)
    with pytest.raises(TypeError):  # to the error handler, with its traceback: waiting an hour will not fix it
        await GuessRetention(service, 30).purge(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("days", ["-1", "1.5", "ninety", "1000000"])  # a million days: no date is that far back
def test_a_retention_that_is_not_a_usable_number_of_days_is_refused(
    telegram: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, days: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("GUESS_RETENTION_DAYS", days)
    with pytest.raises(SettingsError, match="GUESS_RETENTION_DAYS"):
        settings_for(telegram, tmp_path)
    monkeypatch.setenv("GUESS_RETENTION_DAYS", "365")
    assert load_settings(Settings, telegram_bot_token=telegram.token).guess_retention_days == 365
