"""Data access for the model-versions table: which GRU is live, the history of fine-tune runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import ModelVersion
from bot.db.repository import as_utc

INITIAL = "initial"  # the first model the bot served
IMPORTED = "imported"  # a model trained with `nameorigin train` and placed in MODEL_DIR later
PROMOTED = "promoted"
REJECTED = "rejected"
FAILED = "failed"  # the fine-tune process died; no candidate exists
ABANDONED = "abandoned"  # the bot stopped during the run and ended it on purpose; no candidate exists


@dataclass(frozen=True)
class VersionRecord:
    """A model-versions row, detached from the session."""

    version: str
    checkpoint_path: str | None
    parent_version: str | None
    metrics: dict[str, Any]
    decision: str | None
    reason: str | None
    active: bool
    started_at: datetime | None
    created_at: datetime

    @property
    def servable(self) -> bool:
        """Whether it has a checkpoint, so it can be made live."""
        return self.checkpoint_path is not None


def _record(row: ModelVersion) -> VersionRecord:
    return VersionRecord(
        version=row.version,
        checkpoint_path=row.checkpoint_path,
        parent_version=row.parent_version,
        metrics=json.loads(row.metrics or "{}"),
        decision=row.decision,
        reason=row.reason,
        active=row.active,
        started_at=as_utc(row.started_at) if row.started_at else None,
        created_at=as_utc(row.created_at),
    )


async def active_version(*, session: AsyncSession) -> VersionRecord | None:
    """The live model's row, or None before the first start registered one."""
    row = await session.scalar(select(ModelVersion).where(ModelVersion.active))
    return _record(row) if row else None


async def get_version(*, session: AsyncSession, version: str) -> VersionRecord | None:
    """The row for ``version``, or None."""
    row = await session.scalar(select(ModelVersion).where(ModelVersion.version == version))
    return _record(row) if row else None


async def another_version_at(*, session: AsyncSession, checkpoint_path: str, version: str) -> bool:
    """Whether a row other than ``version``'s points at ``checkpoint_path``."""
    found = await session.scalar(
        select(ModelVersion.id)
        .where(ModelVersion.checkpoint_path == checkpoint_path, ModelVersion.version != version)
        .limit(1)
    )
    return found is not None


async def fine_tuning_origin(*, session: AsyncSession, version: str) -> VersionRecord | None:
    """The model ``version`` grew from through fine-tunes: its nearest ancestor, or itself, that was not promoted
    by a fine-tune but put in place (the initial model, or one trained and imported). None if the chain breaks.
    """
    record = await get_version(session=session, version=version)
    seen = set()
    while record is not None and record.decision == PROMOTED and record.parent_version and record.version not in seen:
        seen.add(record.version)  # a cycle cannot be written by this code, but the table is shared
        record = await get_version(session=session, version=record.parent_version)
    return record if record is not None and record.decision != PROMOTED else None


async def list_versions(*, session: AsyncSession, limit: int = 10) -> list[VersionRecord]:
    """The newest ``limit`` rows, newest first."""
    rows = await session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(limit))
    return [_record(row) for row in rows]


async def newest_servable_before(*, session: AsyncSession, version: str) -> VersionRecord | None:
    """The newest version with a checkpoint that was added before ``version``, or None.

    "Before" is the order the rows were added, not their timestamps: a clock set back would misorder those.
    """
    added = select(ModelVersion.id).where(ModelVersion.version == version).scalar_subquery()
    row = await session.scalar(
        select(ModelVersion)
        .where(ModelVersion.id < added, ModelVersion.checkpoint_path.is_not(None))
        .order_by(ModelVersion.id.desc())
        .limit(1)
    )
    return None if row is None else _record(row)


async def count_versions(*, session: AsyncSession) -> int:
    """How many rows the table holds."""
    return int(await session.scalar(select(func.count()).select_from(ModelVersion)) or 0)


async def last_run(*, session: AsyncSession, recorded_after: int = 0) -> VersionRecord | None:
    """The fine-tune run recorded last that got as far as a decision (promoted or rejected), or None.

    Only rows with an id above ``recorded_after`` (see ``last_row_id``) count. Recorded last, not begun
    last: a clock set back makes a later run's ``started_at`` the earlier one.
    """
    row = await session.scalar(
        select(ModelVersion)
        .where(ModelVersion.decision.in_((PROMOTED, REJECTED)), ModelVersion.id > recorded_after)
        .order_by(ModelVersion.id.desc())
        .limit(1)
    )
    return _record(row) if row else None


async def last_row_id(*, session: AsyncSession) -> int:
    """The id of the row added last (0 when there is none): rows added from now on have larger ones."""
    return int(await session.scalar(select(func.max(ModelVersion.id))) or 0)


async def last_run_started(*, session: AsyncSession) -> datetime | None:
    """When the most recent fine-tune run (promoted or rejected) began, or None if none ever ran."""
    run = await last_run(session=session)
    return run.started_at if run else None


async def add_version(
    *,
    session: AsyncSession,
    version: str,
    kind: str,
    checkpoint_path: str | None,
    parent_version: str | None,
    metrics: dict[str, Any],
    decision: str,
    reason: str | None = None,
    started_at: datetime | None = None,
    active: bool = False,
) -> None:
    """Insert a row. An active one needs the previous live row released first (``release_live``)."""
    session.add(
        ModelVersion(
            version=version,
            kind=kind,
            checkpoint_path=checkpoint_path,
            parent_version=parent_version,
            metrics=json.dumps(metrics, sort_keys=True),
            decision=decision,
            reason=reason,
            active=active,
            started_at=started_at,
        )
    )
    await session.flush()


async def release_live(*, session: AsyncSession, expected: str) -> bool:
    """Mark ``expected`` no longer live, only if it still is; False when another process changed it first.

    The check and the change are one UPDATE, so two processes can never both act on a stale read.
    """
    result = await session.execute(
        update(ModelVersion).where(ModelVersion.active, ModelVersion.version == expected).values(active=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


class NotServable(Exception):
    """The version to make live has no checkpoint (any more): the caller's transaction must not commit."""


async def make_live(*, session: AsyncSession, expected: str, version: str) -> bool:
    """Replace the live ``expected`` with the existing ``version``; False (nothing changed) if it was not live.

    Raises ``NotServable``, to roll the transaction back, when ``version`` has no checkpoint: its file may have
    been pruned since the caller loaded it, and a live row must never point at no file.
    """
    if not await release_live(session=session, expected=expected):
        return False
    result = await session.execute(
        update(ModelVersion)
        .where(ModelVersion.version == version, ModelVersion.checkpoint_path.is_not(None))
        .values(active=True)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotServable(version)
    return True


async def prunable_checkpoints(*, session: AsyncSession, keep: int) -> list[VersionRecord]:
    """Promoted fine-tunes whose checkpoints may be deleted, newest first: those past the newest ``keep`` that have
    one, except the live model and its parent (the default rollback). Imported and initial models are never listed."""
    live = await active_version(session=session)
    protected = {live.version, live.parent_version} if live is not None else set()
    rows = await session.scalars(
        select(ModelVersion)
        .where(ModelVersion.decision == PROMOTED, ModelVersion.checkpoint_path.is_not(None))
        .order_by(ModelVersion.id.desc())
    )
    newest_first = [_record(row) for row in rows]
    return [record for record in newest_first[keep:] if record.version not in protected]


async def drop_checkpoint(*, session: AsyncSession, version: str) -> bool:
    """Clear ``version``'s checkpoint path unless it is live, in one UPDATE; True when it was cleared."""
    result = await session.execute(
        update(ModelVersion)
        .where(ModelVersion.version == version, ~ModelVersion.active, ModelVersion.checkpoint_path.is_not(None))
        .values(checkpoint_path=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
