"""Recording verdicts through the service, on both database backends."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from sqlalchemy.exc import IntegrityError

from bot.db import migrate, repository
from bot.db.engine import create_engine, session_factory
from bot.db.models import Correction
from bot.db.repository import NewGuess, Stats
from bot.service import STATS_MAX_AGE_S, Comparison, GuessService, Predictors, VerdictRecorded, VerdictRefused
from core.predict import Rejected
from tests.databases import fetch


async def test_simultaneous_presses_of_one_button_leave_one_verdict(database_url: str, predictors: Predictors) -> None:
    """A double click (or two devices) must not fail on the one-verdict-per-user constraint."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    service = GuessService(predictors=predictors, sessions=sessions)
    try:
        async with sessions.begin() as session:
            new = NewGuess(7, 7, 1, "Rossi", "Rossi", ("Italian", "Spanish", "Portuguese"), 0.6, "test")
            [guess_id] = await repository.add_guesses(session=session, guesses=[new])
        presses = ["Italian", "Spanish"] * 4
        outcomes = await asyncio.gather(
            *(service.record_verdict(guess_id=guess_id, chat_id=7, user_id=7, language=lang) for lang in presses)
        )
        assert all(isinstance(outcome, VerdictRecorded) for outcome in outcomes), outcomes
        rows = await fetch(database_url, "SELECT guess_id, user_id, language FROM corrections")
        assert len(rows) == 1
        assert rows[0][:2] == (guess_id, 7) and rows[0][2] in presses
    finally:
        await engine.dispose()


async def test_a_failed_statement_does_not_carry_user_data_into_logs(database_url: str) -> None:
    """Error messages end up in tracebacks in the logs: they must not show the statement's parameters."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    try:
        with pytest.raises(IntegrityError) as raised:
            async with session_factory(engine).begin() as session:
                # No such guess: the foreign key fails.
                session.add(Correction(guess_id=424242, user_id=987654321, language="Italian", confirmed=False))
        assert "987654321" not in str(raised.value)
        assert "hidden due to hide_parameters" in str(raised.value)
    finally:
        await engine.dispose()


async def test_writes_refused_for_their_values_are_told_apart_from_outages(database_url: str) -> None:
    """Only an error a row's own values cause lets the guess batcher retry the batch's rows one by one."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)

    async def error_of(rows: list[NewGuess] | list[Correction]) -> Exception | None:
        try:
            async with sessions.begin() as session:
                if isinstance(rows[0], NewGuess):
                    await repository.add_guesses(session=session, guesses=rows)  # type: ignore[arg-type]
                else:
                    session.add_all(rows)
        except Exception as error:  # returned, to be classified below
            return error
        return None

    too_long = "x" * 65  # longer than the surname column: PostgreSQL refuses it, SQLite does not check
    try:
        assert await error_of([NewGuess(7, 7, 1, "Rossi", "Rossi", ("Italian",), 0.6, "test")]) is None
        assert await error_of([Correction(guess_id=1, user_id=7, language="Spanish", confirmed=False)]) is None
        duplicate = await error_of([Correction(guess_id=1, user_id=7, language="Italian", confirmed=True)])
        long_surname = await error_of([NewGuess(7, 7, 2, too_long, too_long, ("Italian",), 0.6, "test")])
    finally:
        await engine.dispose()
    assert duplicate is not None and repository.rejected_for_its_data(duplicate)
    if database_url.startswith("postgresql"):
        assert long_surname is not None and repository.rejected_for_its_data(long_surname)

    unreachable = create_engine("postgresql+asyncpg://nobody:secret@127.0.0.1:1/none")
    try:
        with pytest.raises(Exception) as outage:  # whatever the driver raises when refused
            async with session_factory(unreachable).begin() as session:
                await repository.get_guess(session=session, guess_id=1)
    finally:
        await unreachable.dispose()
    assert not repository.rejected_for_its_data(outage.value)


async def test_stats_count_both_tables_and_are_reused_for_a_while(database_url: str, predictors: Predictors) -> None:
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    now = [0.0]
    service = GuessService(predictors=predictors, sessions=sessions, clock=lambda: now[0])
    try:
        assert await service.stats() == Stats(guesses=0, corrections=0, confirmed=0, users=0)
        async with sessions.begin() as session:
            guesses = [
                NewGuess(user, user, 1, "Rossi", "Rossi", ("Italian", "Spanish"), 0.6, "t") for user in (7, 7, 8)
            ]
            ids = await repository.add_guesses(session=session, guesses=guesses)
        for guess_id, language in zip(ids, ("Italian", "Spanish", "Italian"), strict=True):
            user_id = 8 if guess_id == ids[2] else 7
            await service.record_verdict(guess_id=guess_id, chat_id=user_id, user_id=user_id, language=language)
        now[0] = STATS_MAX_AGE_S - 1
        assert (await service.stats()).guesses == 0  # the count from a moment ago
        now[0] = STATS_MAX_AGE_S
        assert await service.stats() == Stats(guesses=3, corrections=3, confirmed=2, users=2)
    finally:
        await engine.dispose()


async def test_the_same_choice_pressed_again_is_not_a_new_choice(database_url: str, predictors: Predictors) -> None:
    """Fine-tunes count the choices made since the last run: a double tap, or an old answer pressed again,
    must not count as new feedback. Another language is a new choice."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    service = GuessService(predictors=predictors, sessions=sessions)

    async def press(language: str) -> tuple[bool, list[tuple[str, datetime]]]:
        verdict = await service.record_verdict(guess_id=guess_id, chat_id=7, user_id=7, language=language)
        assert isinstance(verdict, VerdictRecorded)
        async with sessions() as session:
            votes = await repository.fetch_votes(session=session)
        return verdict.changed, [(vote.language, vote.updated_at) for vote in votes]

    try:
        async with sessions.begin() as session:
            new = NewGuess(7, 7, 1, "Rossi", "Rossi", ("Italian", "Spanish", "Portuguese"), 0.6, "test")
            [guess_id] = await repository.add_guesses(session=session, guesses=[new])
        changed, [(_, chosen)] = await press("Italian")
        assert changed
        assert await press("Italian") == (False, [("Italian", chosen)])
        changed, [(language, changed_at)] = await press("Spanish")
        assert changed and language == "Spanish" and changed_at > chosen
    finally:
        await engine.dispose()


async def test_a_guess_is_stored_as_answered_and_shown_only_in_its_own_chat(
    database_url: str, predictors: Predictors
) -> None:
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    service = GuessService(predictors=predictors, sessions=session_factory(engine))
    try:
        stored = await service.guess(user_id=7, chat_id=-700, message_id=41, text="Anna Rossi")
        assert not isinstance(stored, Rejected)
        top = [p.language for p in stored.result.predictions]
        assert len(top) == 3
        rows = await fetch(
            database_url,
            "SELECT id, user_id, chat_id, message_id, raw_input, surname, top_languages, probability, model_version"
            " FROM guesses",
        )
        [(row_id, user_id, chat_id, message_id, raw, surname, languages, probability, version)] = rows
        assert (row_id, user_id, chat_id, message_id) == (stored.guess_id, 7, -700, 41)
        assert (raw, surname) == ("Anna Rossi", "Rossi")  # the surname the model read, not the whole input
        assert languages == ",".join(top) and version == service.model_version
        assert probability == pytest.approx(stored.result.predictions[0].probability, abs=1e-4)  # the top one's
        guess_id = stored.guess_id
        assert await service.guess_languages(guess_id=guess_id, chat_id=-700) == tuple(top)
        assert await service.guess_languages(guess_id=guess_id, chat_id=7) is None  # a forged press elsewhere
        assert await service.guess_languages(guess_id=guess_id + 1, chat_id=-700) is None
    finally:
        await engine.dispose()


async def test_a_verdict_says_whether_it_changed_anything(database_url: str, predictors: Predictors) -> None:
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    service = GuessService(predictors=predictors, sessions=session_factory(engine))
    try:
        async with service._sessions.begin() as session:
            new = NewGuess(7, 7, 1, "Rossi", "Rossi", ("Italian", "Spanish", "Portuguese"), 0.6, "test")
            [guess_id] = await repository.add_guesses(session=session, guesses=[new])

        async def press(user_id: int, language: str) -> VerdictRecorded | VerdictRefused:
            return await service.record_verdict(guess_id=guess_id, chat_id=7, user_id=user_id, language=language)

        presses = ((7, "Italian"), (7, "Italian"), (7, "Spanish"), (8, "Spanish"))
        first, again, other, someone_else = [await press(user, language) for user, language in presses]
        assert isinstance(first, VerdictRecorded) and (first.changed, first.confirmed) == (True, True)
        assert first.top_languages == ("Italian", "Spanish", "Portuguese")
        assert isinstance(again, VerdictRecorded) and again.changed is False
        assert isinstance(other, VerdictRecorded) and (other.changed, other.confirmed) == (True, False)
        assert isinstance(someone_else, VerdictRecorded) and someone_else.changed is True
        assert isinstance(await press(7, "Klingon"), VerdictRefused)
        rows = await fetch(database_url, "SELECT user_id, language, confirmed FROM corrections ORDER BY user_id")
        assert [(u, lang, bool(c)) for u, lang, c in rows] == [(7, "Spanish", False), (8, "Spanish", False)]
    finally:
        await engine.dispose()


async def test_compare_answers_with_each_model_and_refuses_what_neither_can_read(
    database_url: str, predictors: Predictors
) -> None:
    engine = create_engine(database_url)
    service = GuessService(predictors=predictors, sessions=session_factory(engine))
    try:
        comparison = await service.compare("Dostoevsky")
        assert isinstance(comparison, Comparison)
        assert comparison.gru.predictions == predictors.gru.predict("Dostoevsky", 3).predictions
        assert comparison.rnn.predictions == predictors.rnn.predict("Dostoevsky", 3).predictions
        assert comparison.rnn.predictions != comparison.gru.predictions  # not the live GRU twice
        refused = await service.compare("12345")
        assert isinstance(refused, Rejected) and "no letters" in refused.reason
    finally:
        await engine.dispose()


async def test_a_guess_the_database_refuses_does_not_take_the_others_of_its_batch_with_it(
    database_url: str, predictors: Predictors, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    service = GuessService(predictors=predictors, sessions=session_factory(engine))
    add_guesses = repository.add_guesses

    async def refusing_smith(*, session: object, guesses: list[NewGuess]) -> list[int]:
        if any(guess.surname == "Smith" for guess in guesses):  # as PostgreSQL refuses a value too long
            raise IntegrityError("INSERT INTO guesses", {}, Exception("value too long"))
        return await add_guesses(session=session, guesses=guesses)  # type: ignore[arg-type]

    monkeypatch.setattr(repository, "add_guesses", refusing_smith)
    try:
        together = asyncio.gather(  # submitted at once: one batch, one transaction
            *(
                service.guess(user_id=user, chat_id=user, message_id=1, text=name)
                for user, name in enumerate(["Rossi", "Smith", "Nakamura"], start=1)
            ),
            return_exceptions=True,
        )
        outcomes = await asyncio.wait_for(together, timeout=30)
        assert isinstance(outcomes[1], IntegrityError)
        assert not isinstance(outcomes[0], BaseException) and not isinstance(outcomes[2], BaseException)
        rows = await fetch(database_url, "SELECT surname FROM guesses ORDER BY user_id")
        assert rows == [("Rossi",), ("Nakamura",)]
    finally:
        await engine.dispose()


async def test_a_changed_verdict_is_returned_as_stored_within_one_transaction(database_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    try:
        async with session_factory(engine).begin() as session:
            new = NewGuess(7, 7, 1, "Rossi", "Rossi", ("Italian", "Spanish", "Portuguese"), 0.6, "test")
            [guess_id] = await repository.add_guesses(session=session, guesses=[new])
            guess = await repository.get_guess(session=session, guess_id=guess_id)
            assert guess is not None
            first = await repository.upsert_correction(session=session, guess=guess, user_id=7, language="Italian")
            assert (first.language, first.confirmed) == ("Italian", True)
            # The row is already in this session: what comes back must be what the upsert wrote, not that copy.
            second = await repository.upsert_correction(session=session, guess=guess, user_id=7, language="Spanish")
            assert (second.language, second.confirmed) == ("Spanish", False)
    finally:
        await engine.dispose()


async def test_the_votes_for_fine_tuning_name_who_pressed_about_which_surname_and_when(database_url: str) -> None:
    """In a group one user asks and others press: each verdict is its presser's, on the surname the model read."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with sessions.begin() as session:
            asked = [NewGuess(7, -700, 1, "Anna Rossi", "Rossi", ("Italian",), 0.6, "t"),
                     NewGuess(7, -700, 2, "Smith", "Smith", ("English",), 0.6, "t")]  # fmt: skip
            rossi, smith = [await repository.get_guess(session=session, guess_id=i)
                            for i in await repository.add_guesses(session=session, guesses=asked)]  # fmt: skip
            assert rossi is not None and smith is not None
            for guess, user_id, language in [(rossi, 8, "Italian"), (rossi, 9, "Italian"), (smith, 8, "English")]:
                await repository.upsert_correction(session=session, guess=guess, user_id=user_id, language=language)
        async with sessions.begin() as session:  # user 8 changes their mind later
            await repository.upsert_correction(session=session, guess=rossi, user_id=8, language="Spanish")
        async with sessions() as session:
            votes = await repository.fetch_votes(session=session)
    finally:
        await engine.dispose()
    assert [(v.surname, v.user_id, v.language) for v in votes] == [
        ("Rossi", 8, "Spanish"), ("Rossi", 9, "Italian"), ("Smith", 8, "English")
    ]  # fmt: skip
    changed, unchanged = votes[0], votes[1]
    # First chosen with the others, changed after them: the daily cap counts the one, "new since" the other.
    assert changed.created_at < unchanged.updated_at < changed.updated_at
