"""Attacks on the bot by a user, a file dropped into MODEL_DIR, a database row or a stranger at the webhook port."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import finetune_job, model_store
from bot.config import FinetuneSettings
from bot.db import versions
from bot.finetune_job import LOCK_FILE, run_finetune
from bot.live_model import LiveModel, RollbackRefused
from bot.run_report import RunReport
from bot.service import Predictors
from bot.throttled_log import ThrottledWarning
from tests.bot.models import trained_copy
from tests.bot.test_webhook import message_update, serving, webhook_settings
from tests.bot.verdicts import finetune_settings
from tests.fake_telegram import FakeTelegram


def test_a_link_planted_as_the_fine_tune_lock_file_empties_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whoever may drop files into MODEL_DIR must not make every (scheduled) run empty a file of the bot's choosing:
    # the lock was opened through links, then truncated and emptied again at the end of the run.
    settings = finetune_settings(tmp_path, tmp_path / "names")
    precious = tmp_path / "bot.db"
    precious.write_text("every guess and verdict")
    settings.model_dir.mkdir(parents=True)
    (settings.model_dir / LOCK_FILE).symlink_to(precious)

    async def run(settings: FinetuneSettings, *, force: bool) -> RunReport:
        return RunReport("skipped", "ran")

    monkeypatch.setattr(finetune_job, "_run", run)
    with pytest.raises(OSError):
        run_finetune(settings)
    assert precious.read_text() == "every guess and verdict"
    hard = settings.model_dir / "hard"
    os.link(precious, hard)  # a second name of the same file: a hard link
    (settings.model_dir / LOCK_FILE).unlink()
    hard.rename(settings.model_dir / LOCK_FILE)
    with pytest.raises(OSError):
        run_finetune(settings)
    assert precious.read_text() == "every guess and verdict"


async def test_requests_without_the_webhook_secret_cannot_flood_the_log(
    telegram: FakeTelegram, tmp_path: Path, database_url: str, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # Anyone who can reach the port may post; a warning per refused request let them write the log at line rate.
    settings = webhook_settings(telegram, tmp_path, database_url)
    async with serving(settings, predictors):
        await telegram.wait_for(lambda c: c.method == "setWebhook", timeout=30)
        for _ in range(200):
            assert await telegram.post_update(message_update(66, "Rossi"), settings.webhook_url, "wrong") == 403
    refusals = [r for r in caplog.records if "wrong or missing secret" in r.getMessage()]
    assert len(refusals) == 1


async def test_a_row_naming_no_shipped_model_is_refused_like_any_bad_checkpoint_path(
    sessions: async_sessionmaker[AsyncSession], predictors: Predictors, tmp_path: Path
) -> None:
    # The database is shared: "shipped:../x" raised ValueError past every caller (no start, an error per refresh).
    live = LiveModel(
        predictors=Predictors(gru=predictors.gru, rnn=predictors.rnn),
        sessions=sessions,
        model_dir=tmp_path,
        uncertain_below=0.5,
    )
    assert await live.sync() == predictors.gru.version
    async with sessions.begin() as session:
        await versions.add_version(
            session=session, version="gru-odd", kind="gru", checkpoint_path="shipped:../x", parent_version=None,
            metrics={}, decision=versions.IMPORTED,
        )  # fmt: skip
    assert isinstance(await live.rollback("gru-odd"), RollbackRefused)
    async with sessions.begin() as session:
        assert await versions.make_live(session=session, expected=predictors.gru.version, version="gru-odd")
    assert await live.sync() == predictors.gru.version  # the model answering goes on answering


async def test_a_file_dropped_into_the_model_folder_writes_no_line_break_or_escape_into_the_log(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The dataset digest was read as any string, and a refusal quotes its first 12 characters.
    model_dir = tmp_path / "models"
    await model_store.live_record(sessions, model_dir, adopt_trained=True)
    trained_copy(model_dir / "gru.safetensors", "gru-dropped", dataset_sha256="\n\x1b[2JFORGED" + "0" * 54)
    await model_store.live_record(sessions, model_dir, warned=set(), adopt_max_drop=0.5)
    assert "gru.safetensors" in caplog.text  # it was looked at, and refused
    assert not [r for r in caplog.records if "\n" in r.getMessage() or "\x1b" in r.getMessage()]


def test_a_throttled_warning_says_how_many_lines_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    warn = ThrottledWarning(logging.getLogger("tests.throttled"), "refused %s", interval=60, clock=lambda: now[0])
    for second in (0, 1, 59, 61, 62, 200):
        now[0] = second
        warn("x")
    assert [r.getMessage() for r in caplog.records if r.name == "tests.throttled"] == [
        "refused x",
        "refused x (2 more since the last such line)",
        "refused x (1 more since the last such line)",
    ]
