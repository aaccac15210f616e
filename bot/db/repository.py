"""Data access: a few small keyword-only functions, each run inside the caller's session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Correction, Guess, utcnow
from bot.feedback import Vote

# SQLSTATE classes of errors caused by the values written, not by the database: data exceptions and
# integrity constraint violations.
_DATA_ERROR_CLASSES = ("22", "23")


def rejected_for_its_data(error: Exception) -> bool:
    """Whether the database refused a write for the values in it (so other rows of the batch may be fine)."""
    if isinstance(error, IntegrityError):
        return True
    sqlstate = getattr(error.orig, "sqlstate", None) if isinstance(error, DBAPIError) else None
    return isinstance(sqlstate, str) and sqlstate[:2] in _DATA_ERROR_CLASSES


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


async def ping(*, session: AsyncSession) -> None:
    """Raise if the database cannot answer a trivial query."""
    await session.execute(text("SELECT 1"))


async def sqlite_damage(*, session: AsyncSession) -> str | None:
    """What SQLite's ``PRAGMA quick_check`` finds wrong in the database file, or None (and on other databases).

    It reads every page, so it finds damage that the bot's own queries would only meet later, mid-guess.
    """
    if (await session.connection()).dialect.name != "sqlite":
        return None
    rows = [str(row) for row in (await session.scalars(text("PRAGMA quick_check"))).all()]
    if rows == ["ok"]:
        return None
    # Its first row may start with a "*** in database main ***" heading; each further line is one problem.
    problems = [line for row in rows for line in row.splitlines() if line and not line.startswith("***")]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{problems[0] if problems else 'damaged'}{more}"


async def get_guess(*, session: AsyncSession, guess_id: int, lock: bool = False) -> Guess | None:
    """The guess with this id, or None. ``lock`` holds it (PostgreSQL's FOR KEY SHARE) until the transaction ends,
    so that a verdict written next is not deleted with it by a concurrent purge or waits for that purge to end."""
    return await session.get(Guess, guess_id, with_for_update={"read": True, "key_share": True} if lock else None)


async def chosen_language(*, session: AsyncSession, guess_id: int, user_id: int) -> str | None:
    """The language ``user_id`` has chosen for the guess so far, or None before their first press."""
    language: str | None = await session.scalar(
        select(Correction.language).where(Correction.guess_id == guess_id, Correction.user_id == user_id)
    )
    return language


async def upsert_correction(*, session: AsyncSession, guess: Guess, user_id: int, language: str) -> Correction:
    """Record ``user_id``'s verdict on ``guess``; pressing another language updates the same row.

    One ``INSERT ... ON CONFLICT DO UPDATE``: two presses racing (a double click, two devices) both
    succeed, the later one winning, inside the caller's transaction on either backend. The same language
    pressed again leaves the row as it was: its ``updated_at`` says when the choice was made, and a
    fine-tune counts the choices made since the last run, so a double tap must not count as new feedback.
    """
    values = {"language": language, "confirmed": language == guess.top_language}
    row = {"guess_id": guess.id, "user_id": user_id, **values, "created_at": utcnow()}
    key, changes = [Correction.guess_id, Correction.user_id], {**values, "updated_at": utcnow()}
    dialect = session.get_bind().dialect.name
    insert: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        insert = postgresql.insert(Correction).values(row)
    elif dialect == "sqlite":
        insert = sqlite.insert(Correction).values(row)
    else:
        raise RuntimeError(f"no upsert for the {dialect} dialect")
    statement = insert.on_conflict_do_update(
        index_elements=key, set_=changes, where=Correction.language != insert.excluded.language
    )
    await session.execute(statement)
    correction = await session.scalar(
        select(Correction)
        .where(Correction.guess_id == guess.id, Correction.user_id == user_id)
        .execution_options(populate_existing=True)
    )
    assert correction is not None  # written just above, in this transaction
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
    # One scan per table: the filtered count shares the pass (FILTER: SQLite 3.30+, every PostgreSQL we support).
    guesses, users = (await session.execute(select(func.count(), func.count(func.distinct(Guess.user_id))))).one()
    corrections, confirmed = (
        await session.execute(select(func.count(), func.count().filter(Correction.confirmed)).select_from(Correction))
    ).one()
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


@dataclass(frozen=True)
class UserData:
    """What the database keeps about one user: the names they sent (with the answers), and their verdicts."""

    guesses: int
    verdicts: int


async def count_user_data(*, session: AsyncSession, user_id: int) -> UserData:
    """How many guesses ``user_id`` asked for, and how many verdicts they gave."""
    guesses = await session.scalar(select(func.count()).select_from(Guess).where(Guess.user_id == user_id))
    verdicts = await session.scalar(select(func.count()).select_from(Correction).where(Correction.user_id == user_id))
    return UserData(guesses=guesses or 0, verdicts=verdicts or 0)


async def delete_user_data(*, session: AsyncSession, user_id: int) -> UserData:
    """Delete ``user_id``'s guesses and verdicts, and others' verdicts on those guesses; returns what was theirs."""
    verdicts = await session.execute(delete(Correction).where(Correction.user_id == user_id))
    # Others' verdicts on this user's guesses are about the names this user sent: they go with the guesses.
    theirs = select(Guess.id).where(Guess.user_id == user_id)
    await session.execute(delete(Correction).where(Correction.guess_id.in_(theirs)))
    guesses = await session.execute(delete(Guess).where(Guess.user_id == user_id))
    # A DELETE's result is a CursorResult, which counts its rows; execute() is typed for any statement.
    return UserData(
        guesses=cast(CursorResult[Any], guesses).rowcount, verdicts=cast(CursorResult[Any], verdicts).rowcount
    )


async def delete_unrated_guesses(*, session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` guesses created before ``before`` that no one gave a verdict on; returns how many.

    Two statements, not one: PostgreSQL's DELETE waits for a verdict's transaction that holds the guess and then
    deletes it on its own stale snapshot, cascading the just-recorded verdict away. So the rows are locked first
    (skipping those a verdict holds), and the DELETE, with a snapshot taken after the locks, checks again.
    """
    unrated = ~select(Correction.id).where(Correction.guess_id == Guess.id).exists()
    candidates = (
        select(Guess.id)
        .where(Guess.created_at < as_utc(before), unrated)  # SQLite compares times as written, zone ignored
        .order_by(Guess.id)
        .limit(limit)  # a batch: on SQLite every write waits while this one holds the database
        .with_for_update(skip_locked=True)  # PostgreSQL only; SQLite has one writer
    )
    ids = list(await session.scalars(candidates))
    if not ids:
        return 0
    deleted = await session.execute(delete(Guess).where(Guess.id.in_(ids), unrated))
    return cast(CursorResult[Any], deleted).rowcount
