"""The model-versions table and the files behind it: registration, rollback, reloads, races."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import admin_views, model_store
from bot.app import load_predictors
from bot.config import Settings, load_settings
from bot.db import versions
from bot.db.models import ModelVersion
from bot.live_model import (
    LOAD_RETRY_FIRST_S,
    LOAD_RETRY_MAX_S,
    LiveModel,
    RollbackRefused,
    RolledBack,
    load_retry_delay,
)
from bot.service import Predictors
from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.predict import Predictor, shipped_checkpoint_path
from tests.bot.models import trained_copy


async def test_the_shipped_model_is_registered_once_as_the_live_version(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    first = await model_store.live_record(sessions, tmp_path / "models")
    again = await model_store.live_record(sessions, tmp_path / "models")
    assert first == again
    assert (first.decision, first.checkpoint_path, first.active) == ("initial", "shipped:gru", True)


def test_a_stored_checkpoint_path_cannot_lead_out_of_model_dir(tmp_path: Path) -> None:
    assert model_store.resolve(tmp_path, "versions/gru-a.safetensors") == tmp_path / "versions/gru-a.safetensors"
    for stored in ("../elsewhere.safetensors", "versions/../../x.safetensors", "/etc/passwd"):
        with pytest.raises(CheckpointError, match="does not lie inside MODEL_DIR"):
            model_store.resolve(tmp_path, stored)


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
    await live.sync(adopt_trained=True)
    async with sessions.begin() as session:
        await versions.add_version(
            session=session, version="gru-rejected", kind="gru", checkpoint_path=None, parent_version=None,
            metrics={}, decision=versions.REJECTED, reason="test accuracy would drop",
        )  # fmt: skip
    refused = await live.rollback("gru-rejected")
    assert isinstance(refused, RollbackRefused) and "has no checkpoint to go back to (run rejected)" in refused.reason
    assert isinstance(await live.rollback(), RollbackRefused)  # nothing older to go back to

    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")
    assert await live.sync(adopt_trained=True) == "gru-trained-1"  # adopted and swapped in
    # Another process changes the live version between our read and our write: the write does nothing.
    async with sessions.begin() as session:
        assert not await versions.make_live(session=session, expected=shipped.version, version="gru-trained-1")
    rolled = await live.rollback()
    assert rolled == RolledBack(version=shipped.version, previous="gru-trained-1")
    assert live.version == shipped.version

    # Now the race inside rollback itself: while it loads its target, another replica makes a third version live.
    trained_copy(model_dir / "gru.safetensors", "gru-trained-2")
    assert await live.sync(adopt_trained=True) == "gru-trained-2"
    load = live._load

    async def load_while_another_replica_switches(record: versions.VersionRecord) -> Predictor:
        predictor = await load(record)
        async with sessions.begin() as session:
            assert await versions.make_live(session=session, expected="gru-trained-2", version="gru-trained-1")
        return predictor

    live._load = load_while_another_replica_switches  # type: ignore[method-assign]
    lost = await live.rollback(shipped.version)
    assert isinstance(lost, RollbackRefused) and "changed meanwhile" in lost.reason
    assert live.version == "gru-trained-2"  # nothing swapped in; the next sync follows the database
    async with sessions() as session:
        assert (await versions.active_version(session=session)).version == "gru-trained-1"  # type: ignore[union-attr]


async def test_a_rollback_to_a_lost_file_names_no_server_path(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = tmp_path / "models"
    predictors = Predictors(gru=Predictor.shipped("gru"), rnn=Predictor.shipped("rnn"))
    live = LiveModel(predictors=predictors, sessions=sessions, model_dir=model_dir, uncertain_below=0.5)
    await live.sync(adopt_trained=True)
    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")
    assert await live.sync(adopt_trained=True) == "gru-trained-1"
    assert isinstance(await live.rollback(), RolledBack)
    (model_dir / "versions/gru-trained-1.safetensors").unlink()
    refused = await live.rollback("gru-trained-1")
    # The reply may go to a group: the path stays in the log.
    assert refused == RollbackRefused("gru-trained-1 cannot be loaded: its checkpoint is missing or damaged.")
    assert "versions/gru-trained-1.safetensors" in caplog.text


async def test_a_checkpoint_that_does_not_match_its_row_is_not_served(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    shipped = Predictor.shipped("gru")
    predictors = Predictors(gru=shipped, rnn=Predictor.shipped("rnn"))
    live = LiveModel(predictors=predictors, sessions=sessions, model_dir=model_dir, uncertain_below=0.5)
    assert await live.sync(adopt_trained=True) == shipped.version
    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")
    assert await live.sync(adopt_trained=True) == "gru-trained-1"
    trained_copy(model_dir / "versions/gru-trained-1.safetensors", "gru-impostor")  # replaced behind our back
    assert isinstance(await live.rollback(shipped.version), RolledBack)
    async with sessions.begin() as session:
        assert await versions.make_live(session=session, expected=shipped.version, version="gru-trained-1")
    assert await live.sync(adopt_trained=True) == shipped.version  # refuses the mismatched file and keeps answering


async def test_a_live_version_that_failed_to_load_is_tried_again_later(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    shipped = Predictor.shipped("gru")
    now = [0.0]
    live = LiveModel(
        predictors=Predictors(gru=shipped, rnn=Predictor.shipped("rnn")),
        sessions=sessions,
        model_dir=model_dir,
        uncertain_below=0.5,
        clock=lambda: now[0],
    )
    assert await live.sync(adopt_trained=True) == shipped.version
    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")
    assert await live.sync(adopt_trained=True) == "gru-trained-1"
    assert isinstance(await live.rollback(shipped.version), RolledBack)
    stored = model_dir / "versions" / "gru-trained-1.safetensors"
    whole = stored.read_bytes()
    stored.write_bytes(whole[: len(whole) // 2])  # e.g. a shared volume serving a partial file for a while
    async with sessions.begin() as session:  # another replica makes it live again
        assert await versions.make_live(session=session, expected=shipped.version, version="gru-trained-1")
    assert await live.sync(adopt_trained=True) == shipped.version  # cannot load: the old model keeps answering
    stored.write_bytes(whole)
    now[0] = LOAD_RETRY_FIRST_S / 2
    assert await live.sync(adopt_trained=True) == shipped.version  # not retried at every refresh
    now[0] = LOAD_RETRY_FIRST_S + 1
    assert await live.sync(adopt_trained=True) == "gru-trained-1"  # but retried after a while


def test_load_retries_back_off_to_an_hour_and_stay_there() -> None:
    assert [load_retry_delay(n) for n in (1, 2, 3)] == [
        LOAD_RETRY_FIRST_S,
        2 * LOAD_RETRY_FIRST_S,
        4 * LOAD_RETRY_FIRST_S,
    ]
    assert load_retry_delay(10) == load_retry_delay(5_000) == LOAD_RETRY_MAX_S  # weeks of failures, no overflow


async def test_a_uniform_prediction_prior_holds_for_the_starting_and_every_swapped_in_model(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    settings = load_settings(Settings, telegram_bot_token="1:x", model_dir=model_dir, prediction_prior="uniform")
    predictors = load_predictors(settings)
    assert (predictors.gru.prior, predictors.rnn.prior) == ("uniform", "uniform")
    # Dutch is 1.7% of the training names: the dataset's prior calls Jansen English, a uniform one Dutch.
    assert predictors.gru.predict("Jansen").predictions[0].language == "Dutch"
    assert Predictor.shipped("gru").predict("Jansen").predictions[0].language == "English"
    live = LiveModel(
        predictors=predictors, sessions=sessions, model_dir=model_dir, uncertain_below=0.5, prior="uniform"
    )
    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")
    assert await live.sync(adopt_trained=True) == "gru-trained-1"
    assert predictors.gru.prior == "uniform"


def test_serve_refuses_a_prior_its_model_cannot_apply_in_one_line(tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    shipped = load_checkpoint(shipped_checkpoint_path("gru"))
    older = replace(shipped.metadata, version="gru-before-priors", class_prior=None)
    save_checkpoint(model_dir / "gru.safetensors", shipped.model, older)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DATABASE_URL", "BOT_"))}
    env.update(
        TELEGRAM_BOT_TOKEN="1:x", TELEGRAM_API_BASE_URL="http://127.0.0.1:9/bot", MODEL_DIR=str(model_dir),
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", PREDICTION_PRIOR="uniform",
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "core.cli", "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "cannot start the bot" in result.stderr and "gru-before-priors" in result.stderr
    assert "Traceback" not in result.stderr


async def test_fine_tuning_origin_is_the_model_a_chain_of_fine_tunes_grew_from(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    shipped = await model_store.live_record(sessions, tmp_path / "models")
    async with sessions.begin() as session:
        for version, parent, decision in (
            ("gru-ft-1", shipped.version, versions.PROMOTED),
            ("gru-ft-2", "gru-ft-1", versions.PROMOTED),
            ("gru-imported", "gru-ft-2", versions.IMPORTED),  # a person trained and placed this one
            ("gru-ft-3", "gru-imported", versions.PROMOTED),
            ("gru-orphan", "gru-gone", versions.PROMOTED),  # its parent's row was deleted
        ):
            await versions.add_version(
                session=session, version=version, kind="gru", checkpoint_path=f"versions/{version}.safetensors",
                parent_version=parent, metrics={}, decision=decision,
            )  # fmt: skip
    async with sessions() as session:

        async def origin_of(version: str) -> str | None:
            record = await versions.fine_tuning_origin(session=session, version=version)
            return None if record is None else record.version

        assert await origin_of(shipped.version) == shipped.version
        assert await origin_of("gru-ft-2") == shipped.version
        assert await origin_of("gru-ft-3") == "gru-imported"
        assert await origin_of("gru-imported") == "gru-imported"
        assert await origin_of("gru-orphan") is None


async def test_models_lists_the_newest_ten_and_the_live_one_and_counts_the_rest(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    live = LiveModel(
        predictors=Predictors(gru=Predictor.shipped("gru"), rnn=Predictor.shipped("rnn")),
        sessions=sessions, model_dir=tmp_path / "models", uncertain_below=0.5,
    )  # fmt: skip
    shipped = await live.sync(adopt_trained=True)  # the oldest version, and the live one
    async with sessions.begin() as session:
        for run in range(12):
            await versions.add_version(
                session=session, version=f"gru-rejected-{run:02d}", kind="gru", checkpoint_path=None,
                parent_version=shipped, metrics={}, decision=versions.REJECTED,
            )  # fmt: skip
    records, total = await live.history()
    assert total == 13 and [r.version for r in records][-1] == shipped and len(records) == 11
    text = admin_views.versions_text(records, total)
    assert text.startswith("<b>Model versions</b> (newest first, ▶ live, times in UTC)\n")
    assert text.count("\n") == 12 and text.endswith("… and 2 older, not shown. /rollback takes any version by name.")


async def live_after(
    sessions: async_sessionmaker[AsyncSession], model_dir: Path, rows: list[tuple[str, str | None, bool]]
) -> LiveModel:
    """The shipped GRU, then each (version, parent, has a checkpoint) row in order, the last one made live."""
    live = LiveModel(
        predictors=Predictors(gru=Predictor.shipped("gru"), rnn=Predictor.shipped("rnn")),
        sessions=sessions, model_dir=model_dir, uncertain_below=0.5,
    )  # fmt: skip
    previous = await live.sync(adopt_trained=True)
    for version, parent, servable in rows:
        stored = f"versions/{version}.safetensors" if servable else None
        if stored is not None:
            trained_copy(model_dir / stored, version)
        last = version == rows[-1][0]
        async with sessions.begin() as session:
            if last:
                assert await versions.release_live(session=session, expected=previous)
            await versions.add_version(
                session=session, version=version, kind="gru", checkpoint_path=stored, parent_version=parent,
                metrics={}, decision=versions.PROMOTED if stored else versions.REJECTED, active=last,
            )  # fmt: skip
    assert await live.sync() == rows[-1][0]
    return live


async def test_rollback_without_a_recorded_parent_goes_to_the_newest_earlier_version(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    shipped = Predictor.shipped("gru").version
    # A model trained and imported by hand records no parent.
    live = await live_after(sessions, tmp_path / "models", [("gru-ft-1", shipped, True), ("gru-imported", None, True)])
    assert await live.rollback() == RolledBack(version="gru-ft-1", previous="gru-imported")
    assert live.version == "gru-ft-1"


@pytest.mark.parametrize("clock_set_back", [False, True])
async def test_rollback_past_a_parent_without_checkpoint_goes_to_the_next_older_servable_version(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, clock_set_back: bool
) -> None:
    shipped = Predictor.shipped("gru").version
    rows = [("gru-ft-1", shipped, True), ("gru-rejected", "gru-ft-1", False), ("gru-ft-2", "gru-rejected", True)]
    live = await live_after(sessions, tmp_path / "models", rows)
    if clock_set_back:  # gru-ft-1 was recorded a day ahead: "older" is the order versions were added, not their times
        ahead = datetime.now(UTC) + timedelta(days=1)
        async with sessions.begin() as session:
            first = update(ModelVersion).where(ModelVersion.version == "gru-ft-1")
            await session.execute(first.values(created_at=ahead))
    assert await live.rollback() == RolledBack(version="gru-ft-1", previous="gru-ft-2")
    assert live.version == "gru-ft-1"


async def test_rollback_goes_to_the_parent_even_when_a_newer_version_lies_between(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    shipped = Predictor.shipped("gru").version
    # gru-ft-1 was rolled back, and gru-ft-2 grew from the shipped GRU afterwards: going back means the shipped GRU.
    live = await live_after(sessions, tmp_path / "models", [("gru-ft-1", shipped, True), ("gru-ft-2", shipped, True)])
    assert await live.rollback() == RolledBack(version=shipped, previous="gru-ft-2")


async def test_a_live_version_that_keeps_failing_to_load_is_tried_less_and_less_often(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    now = [0.0]
    live = await live_after(sessions, tmp_path / "models", [("gru-ft-1", None, True)])
    live._clock = lambda: now[0]
    stored = tmp_path / "models" / "versions" / "gru-ft-1.safetensors"
    whole = stored.read_bytes()
    shipped = (await live.rollback()).version  # type: ignore[union-attr]
    stored.write_bytes(whole[: len(whole) // 2])
    async with sessions.begin() as session:  # another replica makes it live again
        assert await versions.make_live(session=session, expected=shipped, version="gru-ft-1")
    assert await live.sync() == shipped  # attempt 1 fails: next at 60 s
    now[0] = LOAD_RETRY_FIRST_S + 1
    assert await live.sync() == shipped  # attempt 2 fails: next 120 s later
    stored.write_bytes(whole)
    now[0] += 2 * LOAD_RETRY_FIRST_S - 1
    assert await live.sync() == shipped  # not yet
    now[0] += 2
    assert await live.sync() == "gru-ft-1"
