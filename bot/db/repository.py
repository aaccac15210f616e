"""Data access: a few small keyword-only functions, each run inside the caller's session."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Correction, Guess, ModelVersion, utcnow


async def add_guess(
    *,
    session: AsyncSession,
    user_id: int,
    chat_id: int,
    raw_input: str,
    surname: str,
    top_languages: tuple[str, ...],
    probability: float,
    model_version: str,
) -> Guess:
    """Store a guess and return it with its id."""
    guess = Guess(
        user_id=user_id,
        chat_id=chat_id,
        raw_input=raw_input,
        surname=surname,
        top_language=top_languages[0],
        top_languages=",".join(top_languages),
        probability=probability,
        model_version=model_version,
    )
    session.add(guess)
    await session.flush()
    return guess


async def set_guess_message(*, session: AsyncSession, guess_id: int, message_id: int) -> None:
    """Remember which bot message shows ``guess_id``."""
    guess = await session.get(Guess, guess_id)
    if guess is not None:
        guess.message_id = message_id


async def get_guess(*, session: AsyncSession, guess_id: int) -> Guess | None:
    """The guess with this id, or None."""
    return await session.get(Guess, guess_id)


async def upsert_correction(*, session: AsyncSession, guess: Guess, user_id: int, language: str) -> Correction:
    """Record ``user_id``'s verdict on ``guess``; pressing again updates the same row."""
    existing = await session.scalar(
        select(Correction).where(Correction.guess_id == guess.id, Correction.user_id == user_id)
    )
    confirmed = language == guess.top_language
    if existing is not None:
        existing.language = language
        existing.confirmed = confirmed
        existing.updated_at = utcnow()
        return existing
    correction = Correction(guess_id=guess.id, user_id=user_id, language=language, confirmed=confirmed)
    session.add(correction)
    await session.flush()
    return correction


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


async def active_model_version(*, session: AsyncSession) -> ModelVersion | None:
    """The model version marked active, if any."""
    return await session.scalar(select(ModelVersion).where(ModelVersion.active))
