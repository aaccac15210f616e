"""Data access: a few small keyword-only functions, each run inside the caller's session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Correction, Guess, utcnow
from bot.feedback import Vote


@dataclass(frozen=True)
class NewGuess:
    """A guess to store."""

    user_id: int
    chat_id: int
    message_id: int
    raw_input: str
    surname: str
    top_languages: tuple[str, ...]
    probability: float
    model_version: str


async def add_guesses(*, session: AsyncSession, guesses: Sequence[NewGuess]) -> list[int]:
    """Store guesses (one multi-row INSERT) and return their ids in order."""
    rows = [
        Guess(
            user_id=g.user_id,
            chat_id=g.chat_id,
            message_id=g.message_id,
            raw_input=g.raw_input,
            surname=g.surname,
            top_language=g.top_languages[0],
            top_languages=",".join(g.top_languages),
            probability=g.probability,
            model_version=g.model_version,
        )
        for g in guesses
    ]
    session.add_all(rows)
    await session.flush()
    return [row.id for row in rows]


async def get_guess(*, session: AsyncSession, guess_id: int) -> Guess | None:
    """The guess with this id, or None."""
    return await session.get(Guess, guess_id)


async def upsert_correction(*, session: AsyncSession, guess: Guess, user_id: int, language: str) -> Correction:
    """Record ``user_id``'s verdict on ``guess``; pressing again updates the same row.

    Two presses can race (a double click, two devices): when the other one inserts first, the unique
    constraint stops this insert, which becomes an update of that row instead of an error.
    """
    confirmed = language == guess.top_language
    existing = await _correction(session=session, guess_id=guess.id, user_id=user_id)
    if existing is None:
        correction = Correction(guess_id=guess.id, user_id=user_id, language=language, confirmed=confirmed)
        try:
            async with session.begin_nested():  # a savepoint: a lost race rolls back only this insert
                session.add(correction)
            return correction
        except IntegrityError:
            existing = await _correction(session=session, guess_id=guess.id, user_id=user_id)
            if existing is None:  # the constraint that failed was another one
                raise
    existing.language = language
    existing.confirmed = confirmed
    existing.updated_at = utcnow()
    return existing


async def _correction(*, session: AsyncSession, guess_id: int, user_id: int) -> Correction | None:
    return await session.scalar(
        select(Correction).where(Correction.guess_id == guess_id, Correction.user_id == user_id)
    )


@dataclass(frozen=True)
class Stats:
    """Counts shown by /stats."""

    guesses: int
    corrections: int
    confirmed: int
    users: int

    @property
    def confirmed_share(self) -> float | None:
        """Share of verdicts that confirmed the guess, or None before any verdict."""
        return self.confirmed / self.corrections if self.corrections else None


async def collect_stats(*, session: AsyncSession) -> Stats:
    """Totals over all guesses and corrections."""
    guesses = await session.scalar(select(func.count()).select_from(Guess)) or 0
    corrections = await session.scalar(select(func.count()).select_from(Correction)) or 0
    confirmed = await session.scalar(select(func.count()).select_from(Correction).where(Correction.confirmed)) or 0
    users = await session.scalar(select(func.count(func.distinct(Guess.user_id)))) or 0
    return Stats(guesses=guesses, corrections=corrections, confirmed=confirmed, users=users)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime: SQLite hands back naive values for timezone-aware columns."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def fetch_votes(*, session: AsyncSession) -> list[Vote]:
    """Every stored verdict with the surname it is about, for the feedback policy."""
    rows = await session.execute(
        select(Guess.surname, Correction.user_id, Correction.language, Correction.created_at, Correction.updated_at)
        .join(Guess, Correction.guess_id == Guess.id)
        .order_by(Correction.id)
    )
    return [
        Vote(
            surname=surname,
            user_id=user_id,
            language=language,
            created_at=as_utc(created_at),
            updated_at=as_utc(updated_at),
        )
        for surname, user_id, language, created_at, updated_at in rows
    ]
