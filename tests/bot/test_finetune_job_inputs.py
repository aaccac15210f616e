"""A fine-tune run's inputs, lock and clean-up, checked without training: fine_tune is stopped or stood in for."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot import finetune_job, model_store
from bot.config import FinetuneSettings
from bot.db import migrate, versions
from bot.db.engine import create_engine, session_factory
from bot.finetune_job import LOCK_FILE, run_finetune
from bot.run_report import RunReport
from core.checkpoint import Checkpoint
from core.data import load_dataset
from core.split import SplitConfig, split_dataset
from tests.bot.models import trained_copy
from tests.bot.test_finetune_job import TrainingStarted, stop_at_fine_tune
from tests.bot.verdicts import PORTUGUESE_AO, agreed, finetune_settings, store_verdicts, version_rows


async def record_live(settings: FinetuneSettings, rows: list[tuple[str, str | None, str | None, str]]) -> None:
    """Insert (version, checkpoint path, parent, decision) rows, oldest first; the last one is live."""
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine).begin() as session:
            for i, (version, path, parent, decision) in enumerate(rows):
                await versions.add_version(
                    session=session, version=version, kind="gru", checkpoint_path=path, parent_version=parent,
                    metrics={}, decision=decision, active=i == len(rows) - 1,
                )  # fmt: skip
    finally:
        await engine.dispose()


def test_the_fixed_split_is_the_one_the_live_model_was_tested_on(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = finetune_settings(tmp_path, real_data_dir)
    migrate.upgrade(settings.database_url)
    trained_copy(settings.model_dir / "versions" / "gru-seed7.safetensors", "gru-seed7", split_seed=7)
    asyncio.run(record_live(settings, [("gru-seed7", "versions/gru-seed7.safetensors", None, versions.IMPORTED)]))
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO[:3], "Portuguese")))
    arguments = stop_at_fine_tune(monkeypatch)
    with pytest.raises(TrainingStarted):
        run_finetune(settings, force=True)
    expected = split_dataset(load_dataset(real_data_dir), SplitConfig(seed=7))
    assert arguments["split"].test == expected.test  # not the default seed's: the model may have trained on those


def test_an_origin_that_cannot_be_loaded_only_leaves_the_gate_without_it(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = finetune_settings(tmp_path, real_data_dir)
    migrate.upgrade(settings.database_url)
    trained_copy(settings.model_dir / "versions" / "gru-ft.safetensors", "gru-ft")
    rows: list[tuple[str, str | None, str | None, str]] = [
        ("gru-gone", "versions/gru-gone.safetensors", None, versions.IMPORTED),  # its file was deleted since
        ("gru-ft", "versions/gru-ft.safetensors", "gru-gone", versions.PROMOTED),
    ]
    asyncio.run(record_live(settings, rows))
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO[:3], "Portuguese")))
    arguments = stop_at_fine_tune(monkeypatch)
    with pytest.raises(TrainingStarted):  # the run goes on; it does not fail on the missing file
        run_finetune(settings, force=True)
    assert arguments["live"].metadata.version == "gru-ft"


def test_the_lock_file_names_the_running_process_and_is_emptied_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = finetune_settings(tmp_path, tmp_path / "names")
    lock = settings.model_dir / LOCK_FILE
    seen: list[str] = []

    async def look(settings: FinetuneSettings, *, force: bool) -> RunReport:
        seen.append(lock.read_text())
        return RunReport("skipped", "looked")

    monkeypatch.setattr(finetune_job, "_run", look)
    assert run_finetune(settings).message == "looked"
    assert seen == [f"{os.getpid()}\n"]
    assert lock.read_text() == ""  # nobody is running


def test_a_promotion_that_cannot_be_recorded_leaves_no_candidate_file(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = finetune_settings(tmp_path, real_data_dir)
    migrate.upgrade(settings.database_url)
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO[:3], "Portuguese")))

    def unchanged_copy(live: Checkpoint, *args: Any) -> Checkpoint:  # as good as the live model: promoted
        return Checkpoint(live.model, replace(live.metadata, version="gru-candidate", parent_version="x"))

    add_version = versions.add_version

    async def database_gone(**kwargs: Any) -> None:
        if kwargs["version"] == "gru-candidate":  # the shipped GRU's row is written as usual, at the start
            raise ConnectionError("the database went away")
        await add_version(**kwargs)

    monkeypatch.setattr(finetune_job, "fine_tune", unchanged_copy)
    monkeypatch.setattr(versions, "add_version", database_gone)
    with pytest.raises(ConnectionError):
        run_finetune(settings, force=True)
    assert not (settings.model_dir / model_store.candidate_checkpoint("gru-candidate")).exists()
    assert [row.decision for row in version_rows(settings.database_url)] == [versions.INITIAL]
