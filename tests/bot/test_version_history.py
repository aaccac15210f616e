"""Reading the model-versions history: the last fine-tune run, and where a chain of fine-tunes began."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db import versions

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


async def add_rows(
    sessions: async_sessionmaker[AsyncSession], rows: list[tuple[str, str | None, str, datetime | None]]
) -> None:
    """(version, parent, decision, started_at) rows, none of them live."""
    async with sessions.begin() as session:
        for version, parent, decision, started_at in rows:
            await versions.add_version(
                session=session, version=version, kind="gru", checkpoint_path=f"versions/{version}.safetensors",
                parent_version=parent, metrics={}, decision=decision, started_at=started_at,
            )  # fmt: skip


async def test_the_last_run_is_the_latest_that_reached_a_decision(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Fine-tunes count the verdicts set since it began: a run that died or was abandoned decided nothing.

    The last run is the one recorded last: after the clock was set back, it may have begun "before" the
    one recorded ahead of it."""
    await add_rows(
        sessions,
        [
            ("gru-run-1", None, versions.REJECTED, T0 + timedelta(hours=2)),
            ("gru-run-2", None, versions.PROMOTED, T0 + timedelta(hours=1)),  # the clock was set back meanwhile
            ("gru-run-3", None, versions.FAILED, T0 + timedelta(hours=3)),
            ("gru-run-4", None, versions.ABANDONED, T0 + timedelta(hours=4)),
        ],
    )
    async with sessions() as session:
        assert await versions.last_run_started(session=session) == T0 + timedelta(hours=1)
        first_row = await versions.last_row_id(session=session) - 3
        assert await versions.last_run(session=session, recorded_after=first_row) == await versions.last_run(
            session=session
        )
        assert await versions.last_run(session=session, recorded_after=first_row + 1) is None


async def test_a_cycle_of_fine_tunes_has_no_origin(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The table is shared: rows written by hand may form a cycle, which must neither hang nor name an origin."""
    await add_rows(
        sessions,
        [("gru-a", "gru-b", versions.PROMOTED, None), ("gru-b", "gru-a", versions.PROMOTED, None)],
    )
    async with sessions() as session, asyncio.timeout(10):
        assert await versions.fine_tuning_origin(session=session, version="gru-a") is None
