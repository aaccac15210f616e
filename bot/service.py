"""The bot's logic, free of Telegram types: classify, store guesses, record verdicts, count."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.batching import MicroBatcher
from bot.db import repository
from bot.db.engine import first_line
from bot.db.repository import NewGuess, Stats, UserData, rejected_for_its_data
from core.data import LANGUAGES
from core.predict import Guess, Predictor, Rejected

logger = logging.getLogger(__name__)

STATS_MAX_AGE_S = 30.0
PURGE_BATCH = 1000  # guesses deleted per transaction: each one holds up SQLite's writers only briefly
# /health reports a write that failed (a full disk, a read-only volume) this long, unless one succeeds since:
# a database that answers SELECT 1 is no use to a bot whose every guess is a write.
WRITE_FAILURE_SHOWN_S = 300.0
_WROTE = "nameorigin.wrote"  # session.info key: the transaction wrote a row, so its commit shows writes work


@dataclass(frozen=True)
class StoredGuess:
    """A model answer and the id of its database row (used in button payloads)."""

    guess_id: int
    result: Guess


@dataclass(frozen=True)
class VerdictRecorded:
    """A verdict was stored for ``surname``; ``confirmed`` when it agrees with the guess."""

    surname: str
    language: str
    confirmed: bool
    top_languages: tuple[str, ...]  # the guess's top 3, to redraw its keyboard
    changed: bool = True  # False when this user had already chosen this language for this guess


@dataclass(frozen=True)
class VerdictRefused:
    """The press was not accepted; ``reason`` is safe to show to the user."""

    reason: str


@dataclass(frozen=True)
class Comparison:
    """Both models' answers for one input."""

    gru: Guess
    rnn: Guess


class Predictors:
    """The live GRU (swappable) and the Elman RNN, shared by every update."""

    def __init__(self, gru: Predictor, rnn: Predictor) -> None:
        self.gru = gru
        self.rnn = rnn


Answer = tuple[Guess | Rejected, str]  # a result and the version of the model that produced it


def _batched_predictions(current: Callable[[], Predictor]) -> MicroBatcher[str, Answer]:
    async def run(texts: Sequence[str]) -> list[Answer]:
        predictor = current()  # read per batch, so a swapped-in model serves the next batch, never half of one
        results = await asyncio.to_thread(predictor.predict_many, texts, 3)
        return [(result, predictor.version) for result in results]

    return MicroBatcher(run)


class GuessService:
    """Everything handlers need; all model work runs in worker threads, off the event loop."""

    def __init__(
        self,
        *,
        predictors: Predictors,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._predictors = predictors
        self._sessions = sessions
        self._clock = clock
        self._stats_lock = asyncio.Lock()
        self._stats: tuple[Stats, float] | None = None  # the last counts and when they were taken
        self._gru = _batched_predictions(lambda: predictors.gru)
        self._rnn = _batched_predictions(lambda: predictors.rnn)
        self._new_guesses: MicroBatcher[NewGuess, int] = MicroBatcher(
            self._insert_guesses, retry_alone=rejected_for_its_data
        )
        self._write_failure: tuple[float, str] | None = None  # when the last write failed, and why
        self._guessing: Counter[int] = Counter()  # users with a guess being classified or stored
        self._guesses_settled = asyncio.Condition()

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncSession]:
        """A transaction whose failure, unless the data was at fault, ``write_problem`` reports for a while."""
        try:
            async with self._sessions.begin() as session:
                yield session
        except DBAPIError as exc:
            if not rejected_for_its_data(exc):
                self._write_failure = (self._clock(), f"{type(exc).__name__}: {first_line(exc.orig)}")
            raise
        if session.info.pop(_WROTE, False):  # a transaction that wrote nothing (a refused verdict) proves nothing
            self._write_failure = None

    def write_problem(self) -> str | None:
        """Why the last database write failed, if it did within ``WRITE_FAILURE_SHOWN_S`` and none succeeded since."""
        if self._write_failure is None or self._clock() - self._write_failure[0] > WRITE_FAILURE_SHOWN_S:
            return None
        return self._write_failure[1]

    async def _insert_guesses(self, guesses: Sequence[NewGuess]) -> list[int]:
        # One transaction for every guess waiting: SQLite has a single writer, so this is its fast path.
        async with self._writing() as session:
            ids = await repository.add_guesses(session=session, guesses=guesses)
            session.info[_WROTE] = True
            return ids

    @property
    def model_version(self) -> str:
        """Version of the live GRU."""
        return self._predictors.gru.version

    async def guess(self, *, user_id: int, chat_id: int, message_id: int, text: str) -> StoredGuess | Rejected:
        """Classify ``text`` (the user's message ``message_id``) with the live GRU and store the guess."""
        self._guessing[user_id] += 1
        try:
            return await self._classify_and_store(user_id=user_id, chat_id=chat_id, message_id=message_id, text=text)
        finally:
            async with self._guesses_settled:
                self._guessing[user_id] -= 1
                if not self._guessing[user_id]:
                    del self._guessing[user_id]
                self._guesses_settled.notify_all()

    async def _classify_and_store(
        self, *, user_id: int, chat_id: int, message_id: int, text: str
    ) -> StoredGuess | Rejected:
        result, version = await self._gru.submit(text)
        if isinstance(result, Rejected):
            return result
        guess_id = await self._new_guesses.submit(
            NewGuess(
                user_id=user_id,
                chat_id=chat_id,
                message_id=message_id,
                raw_input=text.strip(),  # what was classified: padding around it is not kept
                surname=result.query.surname,
                top_languages=tuple(p.language for p in result.predictions),
                probability=result.predictions[0].probability,
                model_version=version,
            )
        )
        return StoredGuess(guess_id=guess_id, result=result)

    async def guess_languages(self, *, guess_id: int, chat_id: int) -> tuple[str, ...] | None:
        """The top-3 languages of a stored guess in this chat (to rebuild its keyboard), or None."""
        async with self._sessions() as session:
            guess = await repository.get_guess(session=session, guess_id=guess_id)
            if guess is None or guess.chat_id != chat_id:
                return None
            return tuple(guess.top_languages.split(","))

    async def record_verdict(
        self, *, guess_id: int, chat_id: int, user_id: int, language: str
    ) -> VerdictRecorded | VerdictRefused:
        """Store ``user_id``'s chosen language for a guess, after checking the guess is real and in this chat."""
        if language not in LANGUAGES:
            return VerdictRefused("That language is not one I know.")
        async with self._writing() as session:
            guess = await repository.get_guess(session=session, guess_id=guess_id, lock=True)
            if guess is None or guess.chat_id != chat_id:
                logger.warning("refused a verdict for guess %s: unknown, or from another chat", guess_id)
                return VerdictRefused("I can't find that guess any more. Send the name again?")
            previous = await repository.chosen_language(session=session, guess_id=guess.id, user_id=user_id)
            correction = await repository.upsert_correction(
                session=session, guess=guess, user_id=user_id, language=language
            )
            session.info[_WROTE] = True
            return VerdictRecorded(
                surname=guess.surname,
                language=language,
                confirmed=correction.confirmed,
                top_languages=tuple(guess.top_languages.split(",")),
                changed=previous != language,
            )

    async def compare(self, text: str) -> Comparison | Rejected:
        """The GRU's and the RNN's answers for ``text``."""
        (gru_result, _), (rnn_result, _) = await asyncio.gather(self._gru.submit(text), self._rnn.submit(text))
        if isinstance(gru_result, Rejected):
            return gru_result
        assert isinstance(rnn_result, Guess)  # same input validation for both models
        return Comparison(gru=gru_result, rnn=rnn_result)

    async def ping_database(self) -> None:
        """Raise if the database cannot answer a trivial query (for /health)."""
        async with self._sessions() as session:
            await repository.ping(session=session)

    async def stats(self) -> Stats:
        """Counts of guesses and verdicts, at most ``STATS_MAX_AGE_S`` old.

        Counting scans both tables; on SQLite it also holds the one connection every write waits for.
        Any user may ask, so concurrent and repeated requests share one count.
        """
        async with self._stats_lock:
            if self._stats is not None and self._clock() - self._stats[1] < STATS_MAX_AGE_S:
                return self._stats[0]
            async with self._sessions() as session:
                stats = await repository.collect_stats(session=session)
            self._stats = (stats, self._clock())
            return stats

    async def stored_about(self, user_id: int) -> UserData:
        """What the database keeps about ``user_id`` (for /forget to show before deleting)."""
        async with self._sessions() as session:
            return await repository.count_user_data(session=session, user_id=user_id)

    async def forget(self, user_id: int) -> UserData:
        """Delete what the database keeps about ``user_id``; returns what was deleted.

        A guess of theirs still being classified is stored first, and deleted with the rest: a name sent just
        before ``/forget confirm`` would otherwise be kept, though the reply says all was deleted.
        """
        async with self._guesses_settled:
            await self._guesses_settled.wait_for(lambda: user_id not in self._guessing)
        async with self._writing() as session:
            deleted = await repository.delete_user_data(session=session, user_id=user_id)
            session.info[_WROTE] = bool(deleted.guesses or deleted.verdicts)
        async with self._stats_lock:  # after a count under way, taken before the delete, has been stored
            self._stats = None  # /stats counts what is left
        return deleted

    async def purge_unrated_guesses(self, *, before: datetime, batch_size: int = PURGE_BATCH) -> int:
        """Delete every guess created before ``before`` that no one gave a verdict on; returns how many."""
        total = 0
        while True:
            async with self._writing() as session:
                deleted = await repository.delete_unrated_guesses(session=session, before=before, limit=batch_size)
                session.info[_WROTE] = deleted > 0
            total += deleted
            if deleted < batch_size:
                break
        if total:
            async with self._stats_lock:
                self._stats = None  # /stats counts what is left
        return total
