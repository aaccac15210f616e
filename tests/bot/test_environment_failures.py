"""When the machine misbehaves (a full disk, Ctrl-C at the worst moment), nothing users taught the bot is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot.db import migrate
from bot.finetune_job import run_finetune
from core.checkpoint import load_checkpoint
from core.cli import main
from core.finetune import fine_tune
from core.predict import shipped_checkpoint_path
from tests.bot.models import trained_copy
from tests.bot.test_serve import serve_env
from tests.bot.verdicts import PORTUGUESE_AO, agreed, finetune_settings, store_verdicts, version_rows
from tests.fake_telegram import FakeTelegram
from tests.file_limits import files_at_most

# Larger than the database, smaller than a GRU checkpoint: the copy of a new model runs out of room.
FILE_SIZE_LIMIT = shipped_checkpoint_path("gru").stat().st_size // 2


async def test_a_new_model_that_cannot_be_copied_at_start_leaves_the_bot_answering(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    trained_copy(tmp_path / "models" / "gru.safetensors", "gru-trained-1")  # `nameorigin train` put it there
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", "serve", env=serve_env(telegram, tmp_path), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=lambda: files_at_most(FILE_SIZE_LIMIT),
    )  # fmt: skip
    telegram.inject_message(7, "Nakamura")
    replied = asyncio.create_task(telegram.wait_for_count("sendMessage", 1, timeout=60))
    exited = asyncio.create_task(process.wait())
    try:
        await asyncio.wait([replied, exited], return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        output = (await asyncio.wait_for(process.communicate(), timeout=30))[0].decode()
    replied.cancel()  # in vain once it is done
    assert not replied.cancelled() and replied.exception() is None, f"the bot did not start:\n{output}"
    [reply] = replied.result()
    assert "Japanese" in reply.params["text"]  # the live model answers
    assert "Traceback" not in output
    assert f"not adopting {tmp_path / 'models' / 'gru.safetensors'}: cannot copy it into" in output
    assert not [path.name for path in (tmp_path / "models" / "versions").iterdir()]  # no partial copy


def test_ctrl_c_just_after_a_promotion_commits_keeps_the_promoted_models_file(
    tmp_path: Path, real_data_dir: Path
) -> None:
    settings = finetune_settings(tmp_path, real_data_dir, finetune_epochs=2, finetune_replay=1000, finetune_max_drop=5)
    migrate.upgrade(settings.database_url)
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO, "Portuguese")))

    def ctrl_c_once_the_candidate_is_recorded(session: Session) -> None:
        if any((settings.model_dir / "versions").glob("*.safetensors")):  # saved just before its row commits
            os.kill(os.getpid(), signal.SIGINT)  # the operator presses Ctrl-C at that very moment

    event.listen(Session, "after_commit", ctrl_c_once_the_candidate_is_recorded)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_finetune(settings, force=True)
    finally:
        event.remove(Session, "after_commit", ctrl_c_once_the_candidate_is_recorded)

    [live] = [row for row in version_rows(settings.database_url) if row.active]
    assert live.decision == "promoted" and live.checkpoint_path is not None
    # The database says it is live: its file must still be there, or no fine-tune can start from it again.
    assert load_checkpoint(settings.model_dir / live.checkpoint_path).metadata.version == live.version


def test_a_database_locked_when_the_run_is_recorded_is_one_line_and_leaves_no_file(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = finetune_settings(tmp_path, real_data_dir, finetune_epochs=1, finetune_replay=200, finetune_max_drop=5)
    migrate.upgrade(settings.database_url)
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO, "Portuguese")))
    locker = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)

    def fine_tune_then_lock_the_database(*args: object, **kwargs: object) -> object:
        candidate = fine_tune(*args, **kwargs)  # type: ignore[arg-type]
        locker.execute("BEGIN EXCLUSIVE")  # another writer holds the database as the run comes to record itself
        return candidate

    monkeypatch.setattr("bot.finetune_job.fine_tune", fine_tune_then_lock_the_database)
    monkeypatch.setattr("bot.db.engine.SQLITE_BUSY_TIMEOUT_MS", 200)
    monkeypatch.chdir(tmp_path)
    for name, value in (("DATABASE_URL", settings.database_url), ("MODEL_DIR", str(settings.model_dir)),
                        ("NAMES_DATA_DIR", str(real_data_dir)), ("FINETUNE_EPOCHS", "1"), ("FINETUNE_REPLAY", "200"),
                        ("FINETUNE_MAX_DROP", "5")):  # fmt: skip
        monkeypatch.setenv(name, value)
    try:
        assert main(["finetune", "--force"]) == 2
    finally:
        locker.close()
    error = capsys.readouterr().err.strip()
    assert error == "nameorigin finetune: error: cannot fine-tune: database error: database is locked"
    assert not list((settings.model_dir / "versions").glob("*.safetensors"))  # no file that no row points at
    assert not version_rows(settings.database_url)[1:]  # the shipped model's row only


def test_a_candidate_whose_row_cannot_be_confirmed_keeps_its_file(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As when PostgreSQL commits and the connection drops before it says so: the row may point at the file, and
    # deleting it would leave the live model without one. The database stops answering once the candidate exists.
    settings = finetune_settings(tmp_path, real_data_dir, finetune_epochs=1, finetune_replay=200, finetune_max_drop=5)
    migrate.upgrade(settings.database_url)
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO, "Portuguese")))
    gone = threading.Event()

    def fine_tune_then_lose_the_database(*args: object, **kwargs: object) -> object:
        candidate = fine_tune(*args, **kwargs)  # type: ignore[arg-type]
        gone.set()
        return candidate

    def unreachable(*args: object) -> None:
        if gone.is_set():
            raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr("bot.finetune_job.fine_tune", fine_tune_then_lose_the_database)
    event.listen(Engine, "before_cursor_execute", unreachable)
    try:
        with pytest.raises(DBAPIError, match="disk I/O error"):
            run_finetune(settings, force=True)
    finally:
        event.remove(Engine, "before_cursor_execute", unreachable)
    [kept] = (settings.model_dir / "versions").glob("*.safetensors")
    assert f"kept {kept}: cannot tell whether its row was committed" in caplog.text
