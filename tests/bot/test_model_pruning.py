"""MODEL_KEEP_VERSIONS: promoted fine-tunes' checkpoints beyond the newest few are deleted, never what may serve."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.admin_views import versions_text
from bot.db import migrate, versions
from bot.db.versions import NotServable
from bot.finetune_job import run_finetune
from bot.live_model import RollbackRefused
from bot.model_pruning import prune_checkpoints
from core.predict import Predictor
from tests.bot.test_versions import live_after
from tests.bot.verdicts import PORTUGUESE_AO, agreed, finetune_settings, store_verdicts, version_rows


async def add_chain(
    sessions: async_sessionmaker[AsyncSession], model_dir: Path, rows: list[tuple[str, str | None, str]], live: str
) -> None:
    """(version, parent, decision) rows in order, ``live`` the live one; every servable one gets a file."""
    (model_dir / "versions").mkdir(parents=True, exist_ok=True)
    async with sessions.begin() as session:
        for version, parent, decision in rows:
            path = f"versions/{version}.safetensors" if decision != versions.REJECTED else None
            if path is not None:
                (model_dir / path).write_bytes(b"weights")
            await versions.add_version(
                session=session, version=version, kind="gru", checkpoint_path=path, parent_version=parent,
                metrics={}, decision=decision, active=version == live,
            )  # fmt: skip


CHAIN = [
    ("gru-origin", None, versions.INITIAL),
    ("gru-p1", "gru-origin", versions.PROMOTED),
    ("gru-p2", "gru-p1", versions.PROMOTED),
    ("gru-p3", "gru-p2", versions.PROMOTED),
    ("gru-p4", "gru-p3", versions.PROMOTED),
    ("gru-r5", "gru-p4", versions.REJECTED),
    ("gru-p6", "gru-p4", versions.PROMOTED),
    ("gru-p7", "gru-p6", versions.PROMOTED),
]


async def test_only_old_promoted_checkpoints_go_never_the_live_one_its_parent_or_the_origin(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await add_chain(sessions, tmp_path, CHAIN, live="gru-p3")  # rolled back to p3, whose parent is p2

    with caplog.at_level(logging.INFO, logger="bot.model_pruning"):
        pruned = await prune_checkpoints(sessions, tmp_path, keep=2)

    assert pruned == ["gru-p4", "gru-p1"]  # p7 and p6 are the newest two; p3 is live, p2 its parent
    files = sorted(path.stem for path in (tmp_path / "versions").iterdir())
    assert files == ["gru-origin", "gru-p2", "gru-p3", "gru-p6", "gru-p7"]
    async with sessions() as session:
        records = {record.version: record for record in await versions.list_versions(session=session)}
    assert [v for v, record in records.items() if not record.servable] == ["gru-r5", "gru-p4", "gru-p1"]
    assert "deleted the checkpoints of 2 older fine-tunes (MODEL_KEEP_VERSIONS=2): gru-p4, gru-p1" in caplog.text
    assert await prune_checkpoints(sessions, tmp_path, keep=2) == []  # nothing more to do


async def test_keeping_zero_means_keeping_all(sessions: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    await add_chain(sessions, tmp_path, CHAIN, live="gru-p7")
    assert await prune_checkpoints(sessions, tmp_path, keep=0) == []
    assert len(list((tmp_path / "versions").iterdir())) == 7


async def test_a_version_whose_checkpoint_was_dropped_cannot_be_made_live(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """A rollback checks the file, then switches: a prune in between must not leave the live row pointing nowhere."""
    await add_chain(sessions, tmp_path, CHAIN, live="gru-p7")
    assert await prune_checkpoints(sessions, tmp_path, keep=2) == ["gru-p4", "gru-p3", "gru-p2", "gru-p1"]
    with pytest.raises(NotServable):
        async with sessions.begin() as session:
            await versions.make_live(session=session, expected="gru-p7", version="gru-p4")
    async with sessions() as session:
        live = await versions.active_version(session=session)
    assert live is not None and live.version == "gru-p7"  # the release of p7 was rolled back with it
    async with sessions.begin() as session:
        assert not await versions.drop_checkpoint(session=session, version="gru-p4")  # nothing left to clear


async def test_a_live_version_s_checkpoint_is_never_dropped(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        await versions.add_version(
            session=session, version="gru-live", kind="gru", checkpoint_path="versions/gru-live.safetensors",
            parent_version=None, metrics={}, decision=versions.PROMOTED, active=True,
        )  # fmt: skip
        # Picked as prunable by a process that read the table before a rollback made it live:
        assert not await versions.drop_checkpoint(session=session, version="gru-live")


def test_a_promotion_prunes_older_fine_tunes_checkpoints(tmp_path: Path, real_data_dir: Path) -> None:
    settings = finetune_settings(
        tmp_path, real_data_dir, model_keep_versions=1, finetune_epochs=1, finetune_replay=500
    )  # fmt: skip
    migrate.upgrade(settings.database_url)
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO, "Portuguese")))
    first = run_finetune(settings, force=True)
    assert first.status == "promoted", first.message
    second = run_finetune(settings, force=True)
    assert second.status == "promoted", second.message
    third = run_finetune(settings, force=True)
    assert third.status == "promoted", third.message

    # The newest (live) and its parent stay; the first run's checkpoint went when the third was promoted.
    files = sorted(path.stem for path in (settings.model_dir / "versions").glob("*.safetensors"))
    assert files == sorted([second.version, third.version])
    servable = {row.version: row.checkpoint_path is not None for row in version_rows(settings.database_url)}
    assert servable[first.version] is False and servable[second.version] and servable[third.version]


async def test_models_marks_a_promoted_run_whose_checkpoint_was_deleted(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await add_chain(sessions, tmp_path, CHAIN, live="gru-p7")
    await prune_checkpoints(sessions, tmp_path, keep=3)
    async with sessions() as session:
        lines = versions_text(await versions.list_versions(session=session), 8).splitlines()
    decisions = [line.split("</code> ")[1].split(", no test figures")[0] for line in lines[1:]]
    assert decisions == [
        "promoted", "promoted", "rejected", "promoted",  # p7, p6, r5, p4: the newest three promoted
        "promoted, checkpoint deleted", "promoted, checkpoint deleted", "promoted, checkpoint deleted", "initial",
    ]  # fmt: skip


async def test_keep_counts_the_checkpoints_left_not_the_rows(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await add_chain(sessions, tmp_path, CHAIN, live="gru-p7")
    async with sessions.begin() as session:  # pruned earlier, while p2 was live and p1 its parent
        for version in ("gru-p4", "gru-p3"):
            assert await versions.drop_checkpoint(session=session, version=version)
            (tmp_path / "versions" / f"{version}.safetensors").unlink()
    with caplog.at_level(logging.INFO, logger="bot.model_pruning"):
        assert await prune_checkpoints(sessions, tmp_path, keep=3) == ["gru-p1"]  # p7, p6, p2: the newest three
    assert "deleted the checkpoints of 1 older fine-tune (MODEL_KEEP_VERSIONS=3): gru-p1" in caplog.text
    assert (tmp_path / "versions" / "gru-p2.safetensors").exists()


@pytest.mark.parametrize(
    ("failure", "logged"),
    [
        (OperationalError("SELECT", {}, Exception("database is locked")), "database is locked"),
        (ConnectionResetError("connection lost"), "connection lost"),  # asyncpg raises these unwrapped
    ],
    ids=["database", "connection"],
)
async def test_a_prune_that_fails_deletes_nothing_and_is_logged(
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    logged: str,
) -> None:
    """The promotion stands: the next one prunes what this one could not."""
    await add_chain(sessions, tmp_path, CHAIN, live="gru-p7")

    async def fail(**_: object) -> list[versions.VersionRecord]:
        raise failure

    monkeypatch.setattr(versions, "prunable_checkpoints", fail)
    with caplog.at_level(logging.WARNING, logger="bot.model_pruning"):
        assert await prune_checkpoints(sessions, tmp_path, keep=2) == []
    (record,) = caplog.records
    assert record.getMessage() == f"could not prune older checkpoints: {logged}"
    assert len(list((tmp_path / "versions").iterdir())) == 7


async def test_a_file_that_cannot_be_deleted_is_logged_and_the_others_still_go(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await add_chain(sessions, tmp_path, CHAIN, live="gru-p7")
    (tmp_path / "versions" / "gru-p3.safetensors").unlink()  # already deleted by hand: nothing to say about it
    stuck = tmp_path / "versions" / "gru-p2.safetensors"
    stuck.unlink()
    stuck.mkdir()  # a folder: unlink fails
    with caplog.at_level(logging.WARNING, logger="bot.model_pruning"):
        assert await prune_checkpoints(sessions, tmp_path, keep=2) == ["gru-p4", "gru-p3", "gru-p2", "gru-p1"]
    (record,) = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert record.getMessage().startswith("could not delete the checkpoint of gru-p2: ")
    assert sorted(path.stem for path in (tmp_path / "versions").iterdir()) == [
        "gru-origin",
        "gru-p2",
        "gru-p6",
        "gru-p7",
    ]


async def test_a_rollback_to_a_pruned_version_says_why_even_when_the_prune_comes_during_it(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    shipped = Predictor.shipped("gru").version
    rows: list[tuple[str, str | None, bool]] = [
        (f"gru-ft-{n}", f"gru-ft-{n - 1}" if n > 1 else shipped, True) for n in range(1, 5)
    ]
    live = await live_after(sessions, tmp_path / "models", rows)
    async with sessions.begin() as session:
        assert await versions.drop_checkpoint(session=session, version="gru-ft-1")
    refused = await live.rollback("gru-ft-1")
    assert refused == RollbackRefused("gru-ft-1 has no checkpoint to go back to (deleted under MODEL_KEEP_VERSIONS).")

    load = live._load

    async def load_then_a_fine_tune_prunes(record: versions.VersionRecord) -> Predictor:
        predictor = await load(record)
        async with sessions.begin() as session:
            assert await versions.drop_checkpoint(session=session, version=record.version)
        return predictor

    live._load = load_then_a_fine_tune_prunes  # type: ignore[method-assign]
    refused = await live.rollback("gru-ft-2")
    assert refused == RollbackRefused("gru-ft-2's checkpoint was just deleted; /models lists the others.")
    assert live.version == "gru-ft-4"
    async with sessions() as session:
        assert (await versions.active_version(session=session)).version == "gru-ft-4"  # type: ignore[union-attr]
