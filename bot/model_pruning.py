"""MODEL_KEEP_VERSIONS: after a promotion, the checkpoints of older fine-tunes beyond the newest few are deleted.

Each promoted fine-tune writes a checkpoint of about 1.7 MB to ``MODEL_DIR/versions``; nightly promotions would
fill a disk over the years. The rows stay, with their figures, for ``/models``; only ``/rollback`` to them ends.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import model_store
from bot.db import versions
from bot.db.engine import first_line
from core.checkpoint import CheckpointError

logger = logging.getLogger(__name__)


async def prune_checkpoints(sessions: async_sessionmaker[AsyncSession], model_dir: Path, keep: int) -> list[str]:
    """Delete the checkpoints of promoted fine-tunes past the newest ``keep`` (never the live model's, nor its
    parent's, nor an imported or initial model's); returns their versions, newest first. ``keep`` 0 keeps all.
    """
    if keep == 0:
        return []
    try:
        async with sessions.begin() as session:
            candidates = await versions.prunable_checkpoints(session=session, keep=keep)
            # A row is cleared only if it is still not live: a rollback may have made it live since it was read.
            dropped = [
                record
                for record in candidates
                if await versions.drop_checkpoint(session=session, version=record.version)
            ]
    # The promotion stands; the next one prunes what this one could not. OSError: a connection lost on the way,
    # which asyncpg raises unwrapped.
    except (DBAPIError, OSError) as exc:
        logger.warning("could not prune older checkpoints: %s", first_line(getattr(exc, "orig", exc)))
        return []
    # Files go after the commit, so a row never points at a missing file; a file left behind is only wasted space.
    for record in dropped:
        assert record.checkpoint_path is not None
        try:
            model_store.resolve(model_dir, record.checkpoint_path).unlink(missing_ok=True)
        except (OSError, CheckpointError) as exc:
            logger.warning("could not delete the checkpoint of %s: %s", record.version, exc)
    if dropped:
        names = ", ".join(record.version for record in dropped)
        logger.info(
            "deleted the checkpoints of %d older fine-tune%s (MODEL_KEEP_VERSIONS=%d): %s",
            len(dropped), "" if len(dropped) == 1 else "s", keep, names,
        )  # fmt: skip
    return [record.version for record in dropped]
