"""Copy one nameorigin database into another, empty one: moving from SQLite to PostgreSQL, for one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text

from bot.db.engine import create_engine
from bot.db.models import Base
from bot.db.repository import as_utc

TABLES = ("guesses", "corrections", "model_versions")  # a table after those it refers to
CHUNK = 1000


class CopyRefused(Exception):
    """Nothing was copied; the message says why."""


def _row(values: dict[str, Any]) -> dict[str, Any]:
    # SQLite hands back the stored datetimes without their zone; they were written in UTC.
    return {key: as_utc(value) if isinstance(value, datetime) else value for key, value in values.items()}


async def copy_database(source_url: str, target_url: str) -> dict[str, int]:
    """Copy every row of ``source_url`` into ``target_url``, ids kept, in one transaction; rows per table.

    Both must be at the same revision; the target must hold no rows (so no bot may have started on it).
    """
    source, target = create_engine(source_url), create_engine(target_url)
    copied: dict[str, int] = {}
    try:
        async with source.connect() as reading, target.begin() as writing:
            for name in TABLES:
                table = Base.metadata.tables[name]
                if await writing.scalar(select(func.count()).select_from(table)):
                    raise CopyRefused(
                        f"the target already holds {name} (a bot started on it?): copy into an empty database, "
                        "e.g. after `nameorigin db downgrade base` and `nameorigin db upgrade` on it"
                    )
            for name in TABLES:
                table = Base.metadata.tables[name]
                copied[name] = 0
                result = await reading.stream(select(table).order_by(table.c.id))
                async for chunk in result.mappings().partitions(CHUNK):
                    await writing.execute(insert(table), [_row(dict(row)) for row in chunk])
                    copied[name] += len(chunk)
                if writing.dialect.name == "postgresql":  # ids were given: the next one must come after them
                    await writing.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                            f"COALESCE((SELECT MAX(id) FROM {name}), 0) + 1, false)"
                        )
                    )
    finally:
        await source.dispose()
        await target.dispose()
    return copied
