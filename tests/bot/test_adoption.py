"""A model trained into MODEL_DIR/gru.safetensors: adopted whole and only at start, or refused with one warning."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import model_comparison, model_store
from bot.app import SERVICE_KEY, load_predictors
from bot.config import Settings, load_settings
from bot.db import versions
from bot.db.engine import create_engine, session_factory
from bot.live_model import LiveModel, RollbackRefused
from bot.service import Predictors
from core.checkpoint import CheckpointError, CheckpointMetadata, load_checkpoint, save_checkpoint
from core.data import LANGUAGES
from core.predict import Predictor, shipped_checkpoint_path
from tests.bot.conftest import running_bot, settings_for
from tests.bot.models import shipped_live_model, trained_copy
from tests.fake_telegram import FakeTelegram


async def test_a_newly_trained_model_in_model_dir_is_adopted_and_copied(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    shipped = await model_store.live_record(sessions, model_dir, adopt_trained=True)
    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")
    adopted = await model_store.live_record(sessions, model_dir, adopt_trained=True)
    assert (adopted.version, adopted.decision, adopted.parent_version) == ("gru-trained-1", "imported", shipped.version)
    assert adopted.checkpoint_path == "versions/gru-trained-1.safetensors"
    # Overwriting gru.safetensors later does not change what the recorded version points at.
    trained_copy(model_dir / "gru.safetensors", "gru-trained-2")
    assert (await model_store.live_record(sessions, model_dir, adopt_trained=True)).version == "gru-trained-2"
    assert load_checkpoint(model_dir / "versions/gru-trained-1.safetensors").metadata.version == "gru-trained-1"
    assert (model_dir / "versions/gru-trained-1.safetensors").stat().st_mode & 0o777 == 0o644


async def test_a_model_retrained_during_adoption_is_recorded_as_what_the_copy_holds(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "models"
    await model_store.live_record(sessions, model_dir, adopt_trained=True)
    trained = trained_copy(model_dir / "gru.safetensors", "gru-a")
    read = model_store.read_metadata
    retrains = iter("bcdef")

    def read_then_retrain(path: Path) -> CheckpointMetadata:
        metadata = read(path)
        if path == trained:  # `nameorigin train` replaces the file each time just after the bot looked at it
            trained_copy(trained, f"gru-{next(retrains)}")
        return metadata

    monkeypatch.setattr(model_store, "read_metadata", read_then_retrain)
    adopted = await model_store.live_record(sessions, model_dir, adopt_trained=True)
    assert adopted.checkpoint_path == f"versions/{adopted.version}.safetensors"
    assert load_checkpoint(model_dir / adopted.checkpoint_path).metadata.version == adopted.version


async def test_a_trained_model_still_being_copied_is_not_adopted(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = tmp_path / "models"
    shipped = await model_store.live_record(sessions, model_dir, adopt_trained=True)
    whole = trained_copy(tmp_path / "whole.safetensors", "gru-trained-1").read_bytes()
    model_dir.mkdir()
    (model_dir / "gru.safetensors").write_bytes(whole[: len(whole) // 2])  # `cp` half done
    warned: set[str] = set()
    for _ in range(3):  # a running bot asks at every refresh, and keeps answering with its model
        assert (await model_store.live_record(sessions, model_dir, warned=warned)).version == shipped.version
    assert caplog.text.count("not adopting") == 1
    assert "truncated" in caplog.text
    async with sessions() as session:
        assert [r.version for r in await versions.list_versions(session=session, limit=10)] == [shipped.version]
    (model_dir / "gru.safetensors").write_bytes(whole)  # the copy is done; the next start adopts it
    assert (await model_store.live_record(sessions, model_dir, adopt_trained=True)).version == "gru-trained-1"
    assert load_checkpoint(model_dir / "versions/gru-trained-1.safetensors").metadata.version == "gru-trained-1"


async def test_a_model_in_model_dir_that_is_no_gru_is_neither_adopted_nor_started_with(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = tmp_path / "models"
    shipped = await model_store.live_record(sessions, model_dir, adopt_trained=True)
    model_dir.mkdir()
    rnn = load_checkpoint(shipped_checkpoint_path("rnn")).metadata.version
    (model_dir / "gru.safetensors").write_bytes(shipped_checkpoint_path("rnn").read_bytes())  # trained --model rnn
    refused: set[str] = set()
    for _ in range(3):  # a running bot asks at every refresh
        assert (
            await model_store.live_record(sessions, model_dir, warned=refused, adopt_trained=True)
        ).version == shipped.version
    warning = f"holds a rnn model ({rnn}), but the bot answers and fine-tunes with a GRU"
    assert caplog.text.count(warning) == 1
    assert not (model_dir / "versions").exists()
    settings = load_settings(Settings, telegram_bot_token="1:x", model_dir=model_dir)
    with pytest.raises(CheckpointError, match="holds a rnn model"):
        load_predictors(settings)


@pytest.mark.parametrize(
    ("flaw", "reason"),
    [
        ("weights that are not numbers", "holds NaN or infinite values"),
        ("no recorded class prior", "does not record its training class prior"),
        ("other languages", "differing: Klingon, Vietnamese"),
    ],
)
async def test_a_trained_model_no_replica_could_serve_is_not_adopted(
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    flaw: str,
    reason: str,
) -> None:
    model_dir = tmp_path / "models"
    shipped = await model_store.live_record(sessions, model_dir, prior="uniform")
    checkpoint = load_checkpoint(shipped_checkpoint_path("gru"))
    metadata = replace(checkpoint.metadata, version="gru-flawed-1")
    if flaw == "weights that are not numbers":
        checkpoint.model.embedding.weight.data.fill_(float("nan"))
    elif flaw == "other languages":  # its answers would get no buttons: Klingon has none
        metadata = replace(metadata, labels=(*LANGUAGES[:-1], "Klingon"))
    else:
        metadata = replace(metadata, class_prior=None)  # saved by a version before priors were recorded
    save_checkpoint(model_dir / "gru.safetensors", checkpoint.model, metadata)
    settings = load_settings(Settings, telegram_bot_token="1:x", model_dir=model_dir, prediction_prior="uniform")
    with pytest.raises(CheckpointError, match=reason):
        load_predictors(settings)  # `serve` loads the file first, and refuses to start with it
    # Should it change between that load and the adoption, it is still not made live.
    live = await model_store.live_record(sessions, model_dir, prior="uniform", adopt_trained=True)
    assert live.version == shipped.version  # still live; the database does not claim otherwise
    assert caplog.text.count("not adopting") == 1
    assert not list((model_dir / "versions").glob("*"))  # neither the copy nor its temporary file is left
    async with sessions() as session:
        assert await versions.get_version(session=session, version="gru-flawed-1") is None


async def test_a_model_trained_into_model_dir_goes_live_only_when_the_bot_starts(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = tmp_path / "models"
    live = LiveModel(
        predictors=Predictors(gru=Predictor.shipped("gru"), rnn=Predictor.shipped("rnn")),
        sessions=sessions, model_dir=model_dir, uncertain_below=0.5,
    )  # fmt: skip
    shipped = await live.sync(adopt_trained=True)  # the bot starts
    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")  # `nameorigin train` while the bot runs
    for _ in range(3):  # refreshes: no gate judged it, so it waits for a person's restart
        assert await live.sync() == shipped
    assert caplog.text.count("holds gru-trained-1, which is not live: restart the bot to start with it") == 1
    async with sessions() as session:
        assert await versions.get_version(session=session, version="gru-trained-1") is None
    assert await live.sync(adopt_trained=True) == "gru-trained-1"  # the restart


@pytest.mark.parametrize("first_start", [True, False])
async def test_a_trained_model_far_worse_than_the_live_one_is_not_adopted(
    first_start: bool, sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = tmp_path / "models"
    shipped = Predictor.shipped("gru").version
    if not first_start:  # else the model to beat is the shipped one, which would be registered instead
        await model_store.live_record(sessions, model_dir, adopt_trained=True)
    trained_copy(model_dir / "gru.safetensors", "gru-one-epoch", test_accuracy=0.619)  # a trial run, saved there
    live = await model_store.live_record(sessions, model_dir, adopt_trained=True, adopt_max_drop=0.5)
    assert live.version == shipped
    assert f"its test accuracy, 61.90%, is 25.92 points below that of the live {shipped}, 87.82%" in caplog.text
    trained_copy(model_dir / "gru.safetensors", "gru-retrained", test_accuracy=0.8760)  # 0.22 points lower
    live = await model_store.live_record(sessions, model_dir, adopt_trained=True, adopt_max_drop=0.5)
    assert live.version == "gru-retrained"


async def test_the_bot_holds_what_it_adopts_at_start_to_finetune_max_drop(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    settings = settings_for(telegram, tmp_path, finetune_max_drop=0.5)
    trained_copy(settings.model_dir / "gru.safetensors", "gru-one-epoch", test_accuracy=0.619)
    async with running_bot(settings, predictors) as application:
        assert application.bot_data[SERVICE_KEY].model_version == predictors.gru.version


async def test_a_trained_model_that_cannot_be_compared_waits_for_a_deliberate_start(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = tmp_path / "models"
    shipped = (await model_store.live_record(sessions, model_dir, adopt_trained=True)).version
    trained_copy(model_dir / "gru.safetensors", "gru-other-data", dataset_sha256="0" * 64)  # a changed dataset
    running = await model_store.live_record(sessions, model_dir, warned=set(), adopt_max_drop=0.5)
    assert running.version == shipped and "which the next start will not adopt" in caplog.text
    assert (
        await model_store.live_record(sessions, model_dir, adopt_trained=True, adopt_max_drop=0.5)
    ).version == shipped
    assert "trained on another dataset than the live" in caplog.text and "FINETUNE_MAX_DROP=100" in caplog.text
    trained_copy(model_dir / "gru.safetensors", "gru-other-split", split_seed=7)  # tested on other names
    started = await model_store.live_record(sessions, model_dir, adopt_trained=True, adopt_max_drop=0.5)
    assert started.version == shipped and "tested on another split than the live" in caplog.text
    started = await model_store.live_record(sessions, model_dir, adopt_trained=True, adopt_max_drop=100)
    assert started.version == "gru-other-split"  # the operator's say-so


async def test_a_release_that_ships_a_new_gru_makes_it_live_at_the_next_start(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first start registers the shipped GRU where it lies; an upgrade replaces that file. The row of the
    old one must not stay live, pointing at a file that now holds another version."""
    model_dir = tmp_path / "models"
    old = await model_store.live_record(sessions, model_dir, adopt_trained=True)
    new = trained_copy(tmp_path / "package" / "gru.safetensors", "gru-next-release")
    monkeypatch.setattr(model_store, "shipped_checkpoint_path", lambda kind: new)
    waiting = await model_store.live_record(sessions, model_dir, warned=set())  # a refresh only reports it
    assert waiting.version == old.version
    live = await model_store.live_record(sessions, model_dir, adopt_trained=True)
    assert (live.version, live.decision, live.parent_version) == ("gru-next-release", "imported", old.version)
    assert load_checkpoint(model_dir / live.checkpoint_path).metadata.version == "gru-next-release"  # a copy


async def test_a_new_shipped_gru_far_worse_than_the_live_model_stays_out(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "models"
    await model_store.live_record(sessions, model_dir, adopt_trained=True)
    trained = trained_copy(model_dir / "gru.safetensors", "gru-own", test_accuracy=0.9)
    assert (await model_store.live_record(sessions, model_dir, adopt_trained=True)).version == "gru-own"
    trained.unlink()  # the live model is the copy in versions/
    worse = trained_copy(tmp_path / "package" / "gru.safetensors", "gru-next-release", test_accuracy=0.5)
    monkeypatch.setattr(model_store, "shipped_checkpoint_path", lambda kind: worse)
    live = await model_store.live_record(sessions, model_dir, adopt_trained=True, adopt_max_drop=1.0)
    assert live.version == "gru-own"


async def test_a_bot_started_from_its_own_model_keeps_it_when_the_file_is_removed(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without MODEL_DIR/gru.safetensors the shipped GRU is the model in place, but it is no new model:
    the operator's own, copied to versions/, stays live."""
    model_dir = tmp_path / "models"
    trained = trained_copy(model_dir / "gru.safetensors", "gru-own")
    assert (await model_store.live_record(sessions, model_dir, adopt_trained=True)).version == "gru-own"
    trained.unlink()
    assert (await model_store.live_record(sessions, model_dir, adopt_trained=True)).version == "gru-own"
    # Nor does a bot serving its own model need the shipped file to be there (a damaged installation).
    monkeypatch.setattr(model_store, "shipped_checkpoint_path", lambda kind: tmp_path / "missing.safetensors")
    assert (await model_store.live_record(sessions, model_dir, adopt_trained=True)).version == "gru-own"


def test_the_adoption_gate_allows_a_drop_of_exactly_the_limit_and_anything_at_100() -> None:
    live = load_checkpoint(shipped_checkpoint_path("gru")).metadata
    at = {**live.metrics, "test": {**live.metrics["test"], "accuracy": 0.75}}
    live = replace(live, metrics=at)
    trained = replace(live, version="gru-trained", metrics={**at, "test": {**at["test"], "accuracy": 0.5}})
    assert model_comparison.adoption_refusal(trained, live, 25.0) is None  # 25 points lower, 25 allowed
    assert model_comparison.adoption_refusal(trained, live, 24.9) is not None
    # doctor asks this too: FINETUNE_MAX_DROP=100 lets in even a model tested on another split
    assert model_comparison.adoption_refusal(replace(trained, split_seed=live.split_seed + 1), live, 100) is None


async def test_a_trained_model_is_adopted_when_the_live_checkpoint_is_lost(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    await model_store.live_record(sessions, model_dir, adopt_trained=True)
    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")
    assert (await model_store.live_record(sessions, model_dir, adopt_trained=True)).version == "gru-trained-1"
    (model_dir / "versions" / "gru-trained-1.safetensors").unlink()  # nothing left to compare with
    trained_copy(model_dir / "gru.safetensors", "gru-trained-2")
    live = await model_store.live_record(sessions, model_dir, adopt_trained=True, adopt_max_drop=0.5)
    assert live.version == "gru-trained-2"


async def test_a_model_another_replica_registers_first_is_not_an_error(
    sessions: async_sessionmaker[AsyncSession], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "models"
    shipped = (await model_store.live_record(sessions, model_dir, adopt_trained=True)).version
    trained_copy(model_dir / "gru.safetensors", "gru-trained-1")
    copy_and_place = model_store._copy_and_place

    async def other_replica_registers(metadata: CheckpointMetadata, stored: str) -> None:
        engine = create_engine(database_url)
        try:
            async with session_factory(engine).begin() as session:
                assert await versions.release_live(session=session, expected=shipped)
                await versions.add_version(
                    session=session, version=metadata.version, kind="gru", checkpoint_path=stored,
                    parent_version=shipped, metrics={}, decision=versions.IMPORTED, active=True,
                )  # fmt: skip
        finally:
            await engine.dispose()

    def copy_while_another_replica_adopts(*args: Any) -> tuple[Path, CheckpointMetadata]:
        target, metadata = copy_and_place(*args)
        asyncio.run(other_replica_registers(metadata, model_store.candidate_checkpoint(metadata.version)))
        return target, metadata

    monkeypatch.setattr(model_store, "_copy_and_place", copy_while_another_replica_adopts)
    live = await model_store.live_record(sessions, model_dir, adopt_trained=True)
    assert live.version == "gru-trained-1"
    async with sessions() as session:
        assert [r.version for r in await versions.list_versions(session=session)] == ["gru-trained-1", shipped]


async def test_a_live_version_in_other_languages_is_neither_swapped_in_nor_rolled_back_to(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    # Adopted by a release that did not check labels, so registered in the database before an upgrade: `serve`
    # starts with the shipped GRU (MODEL_DIR/gru.safetensors is gone), then syncs to the live version.
    model_dir = tmp_path / "models"
    live = shipped_live_model(sessions, model_dir)
    shipped = live.version
    await live.sync(adopt_trained=True)
    labels = (*LANGUAGES[:-1], "Klingon")
    trained_copy(model_dir / "versions/gru-klingon.safetensors", "gru-klingon", labels=labels)
    async with sessions.begin() as session:
        await versions.add_version(
            session=session, version="gru-klingon", kind="gru", checkpoint_path="versions/gru-klingon.safetensors",
            parent_version=shipped, metrics={}, decision=versions.IMPORTED, reason="old release",
        )  # fmt: skip
    refused = await live.rollback("gru-klingon")
    assert isinstance(refused, RollbackRefused)
    assert live.version == shipped
    async with sessions.begin() as session:
        assert await versions.make_live(session=session, expected=shipped, version="gru-klingon")
    assert await live.sync(adopt_trained=True) == shipped  # keeps answering with a model that can
