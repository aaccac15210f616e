"""What one user can make the bot do or keep: refusals flooded at it, padding stored, forged button payloads."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.admin_views import NOT_ADMIN
from bot.handlers import SLOW_DOWN
from bot.service import Predictors
from bot.update_log import UPDATE_LOGGER
from tests.bot.conftest import running_bot, settings_for
from tests.bot.test_unusual_updates import handled, texts_to
from tests.databases import fetch
from tests.fake_telegram import FakeTelegram


@pytest.fixture(autouse=True)
def update_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=UPDATE_LOGGER)


async def test_admin_commands_from_a_non_admin_count_against_their_request_limit(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # Each refusal is a reply: unlimited, one user's flood of /models would take the bot's outgoing budget.
    settings = settings_for(telegram, tmp_path, guesses_per_minute=3)
    async with running_bot(settings, predictors):
        for text in ["/retrain", "/models", "/rollback"] * 4:
            telegram.inject_message(5, text)
        for _ in range(5):
            telegram.inject_message(1, "/models")  # the admin (BOT_ADMIN_IDS=1) is not limited
        await handled(caplog, 17)
    refusals = texts_to(telegram, 5)
    assert len(refusals) == 4 and refusals.count(NOT_ADMIN) == 3 and refusals.count(SLOW_DOWN) == 1
    assert len(texts_to(telegram, 1)) == 5 and SLOW_DOWN not in texts_to(telegram, 1)
    assert not (settings.model_dir / ".finetune.lock").exists()


async def test_padding_around_a_name_is_not_stored(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, caplog: pytest.LogCaptureFixture
) -> None:
    # A line is classified without its surrounding blanks; kept, 4,000 of them (12 kB of U+3000) made each
    # guess row a hundred times its size, 20 times a minute per user.
    settings = settings_for(telegram, tmp_path)
    async with running_bot(settings, predictors):
        telegram.inject_message(7, "Rossi\n" + "\u3000" * 4000 + "Smith" + " " * 80)
        telegram.inject_message(8, "/guess \t Fyodor Dostoevsky \u3000\u3000")
        await handled(caplog, 2)
    stored = await fetch(settings.database_url, "SELECT surname, raw_input FROM guesses ORDER BY surname")
    assert stored == [("Dostoevsky", "Fyodor Dostoevsky"), ("Rossi", "Rossi"), ("Smith", "Smith")]
    assert "(the surname in “Fyodor Dostoevsky”)" in texts_to(telegram, 8)[0]
