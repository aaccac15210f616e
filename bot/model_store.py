"""Where GRU checkpoints live under ``MODEL_DIR``, and which one is live according to the database.

The model-versions table is the source of truth (several bot processes may share it); paths in it
are relative to ``MODEL_DIR`` so the folder can move, or ``shipped:gru`` for the packaged model.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db import versions
from bot.db.versions import VersionRecord
from core.checkpoint import read_metadata
from core.predict import shipped_checkpoint_path

SHIPPED_PREFIX = "shipped:"
TRAINED_GRU = "gru.safetensors"  # a model trained with `nameorigin train --out MODEL_DIR/gru.safetensors`


def resolve(model_dir: Path, stored: str) -> Path:
    """The file a stored checkpoint path points at."""
    if stored.startswith(SHIPPED_PREFIX):
        return shipped_checkpoint_path(stored.removeprefix(SHIPPED_PREFIX))
    return model_dir / stored


def initial_checkpoint(model_dir: Path) -> str:
    """The stored path of the GRU to start from when no version is live yet: a trained one, else the shipped one."""
    return TRAINED_GRU if (model_dir / TRAINED_GRU).is_file() else f"{SHIPPED_PREFIX}gru"


def candidate_checkpoint(version: str) -> str:
    """The stored path a fine-tuned version is written to."""
    return f"versions/{version}.safetensors"


async def live_record(sessions: async_sessionmaker[AsyncSession], model_dir: Path) -> VersionRecord:
    """The active version, registering the initial GRU as active when the table has none."""
    async with sessions() as session:
        active = await versions.active_version(session=session)
    if active is not None:
        return active
    stored = initial_checkpoint(model_dir)
    metadata = read_metadata(resolve(model_dir, stored))  # the header only: a few kilobytes
    try:
        async with sessions.begin() as session:
            await versions.add_version(
                session=session,
                version=metadata.version,
                kind=metadata.kind,
                checkpoint_path=stored,
                parent_version=metadata.parent_version,
                metrics=metadata.metrics,
                decision=versions.INITIAL,
                reason="the model the bot started with",
                make_active=True,
            )
    except IntegrityError:  # another process registered it first, or the row exists but was left inactive
        async with sessions.begin() as session:
            if await versions.active_version(session=session) is None:
                await versions.activate(session=session, version=metadata.version)
    async with sessions() as session:
        registered = await versions.active_version(session=session)
    assert registered is not None
    return registered
