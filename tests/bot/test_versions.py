"""The model-versions table and the files behind it: registration, adoption, rollback, races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import model_store
from bot.db import migrate, versions
from bot.db.engine import create_engine, session_factory
from bot.live_model import LiveModel, RollbackRefused, RolledBack
from bot.service import Predictors
from core.checkpoint import load_checkpoint, save_checkpoint
from core.predict import Predictor, shipped_checkpoint_path


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def trained_copy(path: Path, version: str) -> Path:
    """The shipped GRU saved as if `nameorigin train` had produced ``version``."""
    shipped = load_checkpoint(shipped_checkpoint_path("gru"))
    return save_checkpoint(path, shipped.model, replace(shipped.metadata, version=version))


async def test_the_shipped_model_is_registered_once_as_the_live_version(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    first = await model_store.live_record(sessions, tmp_path / "models")
    again = await model_store.live_record(sessions, tmp_path / "models")
    assert first == again
    assert (first.decision, first.checkpoint_path, first.active) == ("initial", "shipped:gru", True)


async def test_a_newly_trained_model_in_model_dir_is_adopted_and_copied(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    shipped = await model_store.live_record(sessions, model_dir)
    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")
    adopted = await model_store.live_record(sessions, model_dir)
    assert (adopted.version, adopted.decision, adopted.parent_version) == ("gru-trained-1", "imported", shipped.version)
    assert adopted.checkpoint_path == "versions/gru-trained-1.safetensors"
    # Overwriting gru.safetensors later does not change what the recorded version points at.
    trained_copy(model_dir / "gru.safetensors", "gru-trained-2")
    assert (await model_store.live_record(sessions, model_dir)).version == "gru-trained-2"
    assert load_checkpoint(model_dir / "versions/gru-trained-1.safetensors").metadata.version == "gru-trained-1"


async def test_rollback_refuses_what_cannot_serve_and_loses_a_race_safely(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    shipped = Predictor.shipped("gru")
    live = LiveModel(
        predictors=Predictors(gru=shipped, rnn=Predictor.shipped("rnn")),
        sessions=sessions,
        model_dir=model_dir,
        uncertain_below=0.5,
    )
    await live.sync()
    async with sessions.begin() as session:
        await versions.add_version(
            session=session, version="gru-rejected", kind="gru", checkpoint_path=None, parent_version=None,
            metrics={}, decision=versions.REJECTED, reason="test accuracy would drop",
        )  # fmt: skip
    refused = await live.rollback("gru-rejected")
    assert isinstance(refused, RollbackRefused) and "rejected and has no checkpoint" in refused.reason
    assert isinstance(await live.rollback(), RollbackRefused)  # nothing older to go back to

    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")
    assert await live.sync() == "gru-trained-1"  # adopted and swapped in
    # Another process changes the live version between our read and our write: the write does nothing.
    async with sessions.begin() as session:
        assert not await versions.make_live(session=session, expected=shipped.version, version="gru-trained-1")
    rolled = await live.rollback()
    assert rolled == RolledBack(version=shipped.version, previous="gru-trained-1")
    assert live.version == shipped.version


async def test_a_checkpoint_that_does_not_match_its_row_is_not_served(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    shipped = Predictor.shipped("gru")
    predictors = Predictors(gru=shipped, rnn=Predictor.shipped("rnn"))
    live = LiveModel(predictors=predictors, sessions=sessions, model_dir=model_dir, uncertain_below=0.5)
    assert await live.sync() == shipped.version
    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")
    assert await live.sync() == "gru-trained-1"
    trained_copy(model_dir / "versions/gru-trained-1.safetensors", "gru-impostor")  # replaced behind our back
    assert isinstance(await live.rollback(shipped.version), RolledBack)
    async with sessions.begin() as session:
        assert await versions.make_live(session=session, expected=shipped.version, version="gru-trained-1")
    assert await live.sync() == shipped.version  # refuses the mismatched file and keeps answering
