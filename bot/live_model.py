"""Keep the bot's in-memory GRU equal to the live version in the database: start-up, hot swap, rollback."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import model_store
from bot.db import versions
from bot.db.versions import VersionRecord
from bot.service import Predictors
from core.calibration import Prior
from core.checkpoint import CheckpointError
from core.predict import Predictor

logger = logging.getLogger(__name__)

# A live version that fails to load is tried again after this long, then twice as long each time, up to
# the maximum: a file on a volume that was briefly unavailable gets picked up, a broken one is not
# reloaded (and logged) at every refresh.
LOAD_RETRY_FIRST_S = 60.0
LOAD_RETRY_MAX_S = 3600.0


def load_retry_delay(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed load of a live version before the next try."""
    # The exponent is capped: after some weeks of hourly failures 2 ** attempts would not fit a float.
    return min(LOAD_RETRY_FIRST_S * 2.0 ** min(attempts - 1, 16), LOAD_RETRY_MAX_S)


@dataclass(frozen=True)
class _LoadFailure:
    attempts: int
    retry_at: float  # on the LiveModel's clock


@dataclass(frozen=True)
class RolledBack:
    """``version`` is live again; ``previous`` was live before."""

    version: str
    previous: str


@dataclass(frozen=True)
class RollbackRefused:
    """Nothing changed; ``reason`` is safe to show."""

    reason: str


class LiveModel:
    """Swaps ``predictors.gru`` when the database's live version changes.

    A swap replaces one attribute: batches already running hold the old predictor and finish on it.
    """

    def __init__(
        self,
        *,
        predictors: Predictors,
        sessions: async_sessionmaker[AsyncSession],
        model_dir: Path,
        uncertain_below: float,
        prior: Prior = "dataset",
        adopt_max_drop: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._predictors = predictors
        self._sessions = sessions
        self._model_dir = model_dir
        self._uncertain_below = uncertain_below
        self._prior = prior
        self._adopt_max_drop = adopt_max_drop  # how much worse a trained model adopted at start may be
        self._swap_lock = asyncio.Lock()
        self._clock = clock
        self._load_failures: dict[str, _LoadFailure] = {}  # live versions that failed to load, by version
        self._warned: set[str] = set()  # trained files in MODEL_DIR it could not adopt and has said so

    @property
    def version(self) -> str:
        """The version answering now."""
        return self._predictors.gru.version

    async def _load(self, record: VersionRecord) -> Predictor:
        assert record.checkpoint_path is not None
        path = model_store.resolve(self._model_dir, record.checkpoint_path)
        predictor = await asyncio.to_thread(Predictor.from_path, path, None, self._uncertain_below, self._prior)
        if predictor.version != record.version:  # the file was replaced behind the database's back
            raise CheckpointError(f"{path} holds version {predictor.version}, not {record.version}")
        # A version registered before the bot checked this (an older release adopted it) can be live or rolled
        # back to: answering with it would fail at every keyboard.
        problem = model_store.unservable(predictor.checkpoint.metadata, path)
        if problem is not None:
            raise CheckpointError(problem)
        return predictor

    async def sync(self, *, adopt_trained: bool = False) -> str:
        """Load the database's live version if it is not the one answering; returns the version answering.

        ``adopt_trained`` (at start) first makes a new ``MODEL_DIR/gru.safetensors`` live. A checkpoint
        that fails to load is logged and the current model keeps answering; it is tried again after
        ``LOAD_RETRY_FIRST_S``, then at doubling intervals.
        """
        async with self._swap_lock:
            record = await model_store.live_record(
                self._sessions,
                self._model_dir,
                prior=self._prior,
                warned=self._warned,
                adopt_trained=adopt_trained,
                adopt_max_drop=self._adopt_max_drop,
            )
            if record.version == self.version:
                return self.version
            failure = self._load_failures.get(record.version)
            if failure is not None and self._clock() < failure.retry_at:
                return self.version
            try:
                predictor = await self._load(record)
            except CheckpointError as exc:
                attempts = 1 if failure is None else failure.attempts + 1
                delay = load_retry_delay(attempts)
                self._load_failures[record.version] = _LoadFailure(attempts, self._clock() + delay)
                logger.error(
                    "live version %s cannot be loaded (%s; attempt %d, next in %.0f s); still answering with %s",
                    record.version, exc, attempts, delay, self.version,
                )  # fmt: skip
                return self.version
            self._load_failures.pop(record.version, None)
            previous, self._predictors.gru = self.version, predictor
            logger.info("switched live model %s -> %s", previous, record.version)
            return self.version

    async def history(self, limit: int = 10) -> tuple[list[VersionRecord], int]:
        """The newest versions, newest first, plus the live one if it is older than those; and how many there are."""
        async with self._sessions() as session:
            records = await versions.list_versions(session=session, limit=limit)
            live = await versions.active_version(session=session)
            total = await versions.count_versions(session=session)
        if live is not None and all(record.version != live.version for record in records):
            records.append(live)
        return records, total

    async def _rollback_target(self, live: VersionRecord) -> VersionRecord | None:
        async with self._sessions() as session:
            if live.parent_version is not None:
                parent = await versions.get_version(session=session, version=live.parent_version)
                if parent is not None and parent.servable:
                    return parent
            return await versions.newest_servable_before(session=session, version=live.version)

    async def rollback(self, version: str | None = None) -> RolledBack | RollbackRefused:
        """Make ``version`` live (default: the live model's parent), after checking its checkpoint loads."""
        async with self._swap_lock:
            live = await model_store.live_record(
                self._sessions, self._model_dir, prior=self._prior, warned=self._warned
            )
            if version is None:
                target = await self._rollback_target(live)
                if target is None:
                    return RollbackRefused("There is no earlier version to roll back to.")
            else:
                async with self._sessions() as session:
                    target = await versions.get_version(session=session, version=version)
                if target is None:
                    return RollbackRefused(f"There is no version {version}. /models lists them.")
                if not target.servable:
                    promoted = target.decision == versions.PROMOTED
                    why = "deleted under MODEL_KEEP_VERSIONS" if promoted else f"run {target.decision}"
                    return RollbackRefused(f"{version} has no checkpoint to go back to ({why}).")
            if target.version == live.version:
                return RollbackRefused(f"{target.version} is already live.")
            try:
                predictor = await self._load(target)
            except CheckpointError as exc:
                # The details name server paths, and the reply may go to a group: they go to the log only.
                logger.warning("rollback to %s refused: %s", target.version, exc)
                return RollbackRefused(f"{target.version} cannot be loaded: its checkpoint is missing or damaged.")
            try:
                async with self._sessions.begin() as session:
                    switched = await versions.make_live(session=session, expected=live.version, version=target.version)
            except versions.NotServable:  # pruned by a fine-tune since it was loaded
                return RollbackRefused(f"{target.version}'s checkpoint was just deleted; /models lists the others.")
            if not switched:
                return RollbackRefused("The live model changed meanwhile; check /models and try again.")
            self._predictors.gru = predictor
            logger.info("rolled back live model %s -> %s", live.version, target.version)
            return RolledBack(version=target.version, previous=live.version)
