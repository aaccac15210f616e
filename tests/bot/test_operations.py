"""What an operator running the bot for months relies on: a deaf bot exits, /health tells, the log says why."""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
from pathlib import Path

import aiohttp
import pytest
import yaml
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from bot import model_store
from bot.db import migrate
from bot.db.engine import create_engine, session_factory
from bot.run_report import RunReport
from bot.server import serve
from bot.service import GuessService, Predictors, VerdictRefused
from core.cli import main
from core.predict import shipped_checkpoint_path
from tests.bot.conftest import settings_for
from tests.bot.test_finetune_runner import outcome_of, runner_with_child
from tests.bot.test_serve import serve_env, start_serve
from tests.bot.test_webhook import free_port
from tests.bot.verdicts import agreed, store_verdicts
from tests.databases import fetch, sqlite_database
from tests.fake_telegram import FakeTelegram
from tests.test_deploy import ROOT


async def test_a_token_revoked_while_polling_stops_the_bot_with_a_failure_status(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    # @BotFather's /revoke: every getUpdates is 401 from now on. The bot can never hear a user again; a bot that
    # ran on (with /health at 200) would never be restarted by Docker or systemd, nor noticed.
    process = await start_serve(telegram, serve_env(telegram, tmp_path), tmp_path)
    telegram.fail_next("getUpdates", 401, times=1000, description="Unauthorized")
    try:
        output = (await asyncio.wait_for(process.communicate(), timeout=60))[0].decode()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            await process.wait()
    assert process.returncode == 2, output
    assert (
        output.strip()
        .splitlines()[-1]
        .startswith(
            "nameorigin serve: error: the bot stopped: long polling stopped: Telegram rejected TELEGRAM_BOT_TOKEN"
        )
    )
    assert "This Application is still running" not in output  # it stopped in order
    assert telegram.token not in output


def _disk_full(connection: object, cursor: object, statement: str, *args: object) -> None:
    if statement.lstrip().upper().startswith("INSERT"):  # SELECT 1 still answers, as on a full disk
        raise sqlite3.OperationalError("database or disk is full")


async def test_health_is_503_while_guesses_cannot_be_written_and_200_again_once_they_can(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors
) -> None:
    port = free_port()
    settings = settings_for(telegram, tmp_path, health_listen=f"127.0.0.1:{port}")
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, Predictors(gru=predictors.gru, rnn=predictors.rnn), stop))

    async def health(client: aiohttp.ClientSession) -> tuple[int, dict[str, object]]:
        async with client.get(f"http://127.0.0.1:{port}/health") as response:
            return response.status, await response.json()

    try:
        await telegram.wait_for(lambda c: c.method == "deleteWebhook", timeout=60)  # polling starts: /health is up
        async with aiohttp.ClientSession() as client:
            assert (await health(client))[0] == 200
            event.listen(Engine, "before_cursor_execute", _disk_full)
            try:
                telegram.inject_message(7, "Nakamura")
                apology = await telegram.wait_for(lambda c: c.method == "sendMessage", timeout=30)
                assert "something went wrong" in apology.params["text"]
                status, body = await health(client)
                assert status == 503, body
                assert body["database"] == "writes failing: OperationalError: database or disk is full"
            finally:
                event.remove(Engine, "before_cursor_execute", _disk_full)
            telegram.inject_message(7, "Rossi")  # room again: the next guess is stored, and the bot is healthy
            await telegram.wait_for(lambda c: "Italian" in str(c.params.get("text")), timeout=30)
            assert await health(client) == (200, {**body, "status": "ok", "database": "ok"})
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_transaction_that_wrote_nothing_does_not_clear_failing_writes(
    tmp_path: Path, predictors: Predictors
) -> None:
    # A refused verdict (its guess unknown) only reads: /health went back to 200 while every guess still failed.
    database_url = sqlite_database(tmp_path)
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    models = Predictors(gru=predictors.gru, rnn=predictors.rnn)
    service = GuessService(predictors=models, sessions=session_factory(engine))
    try:
        event.listen(Engine, "before_cursor_execute", _disk_full)
        try:
            with pytest.raises(DBAPIError):
                await service.guess(user_id=1, chat_id=1, message_id=1, text="Rossi")
            refused = await service.record_verdict(guess_id=999, chat_id=1, user_id=2, language="Italian")
            assert isinstance(refused, VerdictRefused)
            assert service.write_problem() == "OperationalError: database or disk is full"
        finally:
            event.remove(Engine, "before_cursor_execute", _disk_full)
        await service.guess(user_id=1, chat_id=1, message_id=1, text="Rossi")  # a write that succeeds clears it
        assert service.write_problem() is None
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("status", "says"),
    [
        ("rejected", "the live model stays gru-live"),
        ("promoted", "now live"),
    ],
)
async def test_the_bots_log_says_how_each_fine_tune_ended_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, status: str, says: str
) -> None:
    # The child logs at WARNING, so its own INFO line never reaches the bot's log; admins hear in Telegram only.
    report = RunReport(status, "test accuracy would drop 0.18 points (limit 0.00)", "gru-live", "gru-new", seconds=4.4)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="bot")
    async with runner_with_child(tmp_path, monkeypatch, f"print({report.to_json()!r})") as runner:
        assert await outcome_of(runner) == report
    assert (
        f"fine-tune {status}: test accuracy would drop 0.18 points (limit 0.00) (gru-new, {says}; 4.4 s)"
        in caplog.messages
    )


def test_the_finetune_command_names_the_candidate_and_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scores = {"test_accuracy": 0.8782, "test_macro_f1": 0.63, "feedback_accuracy": 0.5}
    report = RunReport(
        "promoted",
        "test accuracy -0.23 points; feedback no worse",
        "gru-live",
        "gru-new",
        live=scores,
        candidate={**scores, "test_accuracy": 0.8759, "feedback_accuracy": 0.75, "prior": "uniform"},
        feedback={"trusted": 12, "train": 8, "holdout": 4, "over_daily_cap": 1},
        seconds=4.4,
    )
    monkeypatch.setattr("bot.finetune_job.run_finetune", lambda settings, force: report)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_database(tmp_path))
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    assert main(["finetune"]) == 0
    # Worded as the admins' report says it, not as raw keys and fractions ("test_accuracy: 0.8782 -> 0.8759").
    assert capsys.readouterr().out.splitlines() == [
        "promoted: test accuracy -0.23 points; feedback no worse",
        "  candidate gru-new, fine-tuned from gru-live",
        "  Test accuracy (uniform prior): 87.82% → 87.59% (-0.23 pts)",
        "  Test macro-F1: 0.630 → 0.630",
        "  Held-out feedback (4 names): 50.00% → 75.00%",
        "  Feedback: 12 trusted names, 8 trained on; left out: 1 over the daily cap, 0 without agreement, 0 tied, "
        "0 in the test split (4.4 s)",
    ]


async def test_a_new_database_beside_saved_versions_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # DATABASE_URL pointed at a fresh PostgreSQL (or a mistyped SQLite path): the bot silently went back to the
    # shipped model, with none of the old verdicts, while MODEL_DIR still held the fine-tuned versions.
    versions_dir = tmp_path / "models" / "versions"
    versions_dir.mkdir(parents=True)
    (versions_dir / "gru-20261129T233224615041Z.safetensors").write_bytes(shipped_checkpoint_path("gru").read_bytes())
    database_url = sqlite_database(tmp_path)
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    try:
        record = await model_store.live_record(session_factory(engine), tmp_path / "models")
    finally:
        await engine.dispose()
    assert record.checkpoint_path == model_store.SHIPPED_GRU  # it still starts: the operator may mean it
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"the database holds no model versions, but {versions_dir} holds 1 (e.g. gru-2026")
    assert "is DATABASE_URL a new database?" in warning


def test_db_copy_moves_verdicts_and_the_live_version_to_an_empty_database(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Moving from SQLite to PostgreSQL: a new DATABASE_URL alone starts over, so the old rows must come along.
    (tmp_path / "old").mkdir()
    old = sqlite_database(tmp_path / "old")
    migrate.upgrade(old)
    asyncio.run(store_verdicts(old, agreed(["Rossi", "Bianchi"], "Italian")))

    async def register_the_shipped_model() -> None:
        engine = create_engine(old)
        try:
            await model_store.live_record(session_factory(engine), tmp_path / "models")
        finally:
            await engine.dispose()

    asyncio.run(register_the_shipped_model())
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    assert main(["db", "copy", old]) == 0
    assert capsys.readouterr().out == "copied 4 guesses, 4 corrections, 1 model_versions\n"
    query = (
        "SELECT g.surname, c.user_id, c.language FROM corrections c JOIN guesses g ON g.id = c.guess_id ORDER BY c.id"
    )
    assert asyncio.run(fetch(database_url, query)) == asyncio.run(fetch(old, query))
    [(live, active)] = asyncio.run(fetch(database_url, "SELECT checkpoint_path, active FROM model_versions"))
    assert (live, bool(active)) == (model_store.SHIPPED_GRU, True)
    asyncio.run(store_verdicts(database_url, agreed(["Verdi"], "Italian")))  # new ids follow the copied ones
    assert asyncio.run(fetch(database_url, "SELECT MAX(id) FROM guesses")) == [(6,)]
    assert main(["db", "copy", old]) == 2  # never into a database that holds rows
    assert "cannot copy: the target already holds guesses" in capsys.readouterr().err


def test_compose_puts_an_init_process_before_the_bot_and_the_finetune_job() -> None:
    # As PID 1, Python ignores SIGTERM until it sets a handler: `nameorigin finetune` never does, so `docker stop`
    # (or `docker compose down` during a cron run) waited out the grace period and killed it.
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["bot"].get("init") is True and services["finetune"].get("init") is True


def test_db_copy_leaves_an_older_target_database_unmigrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped DATABASE_URL naming an older release's database: refused before anything upgrades it.
    (tmp_path / "old").mkdir()
    source = sqlite_database(tmp_path / "old")
    migrate.upgrade(source)
    target = sqlite_database(tmp_path)
    migrate.upgrade(target, "0001")
    monkeypatch.setenv("DATABASE_URL", target)
    monkeypatch.chdir(tmp_path)
    assert main(["db", "copy", source]) == 2
    assert "the target DATABASE_URL is at revision 0001: copy into an empty database" in capsys.readouterr().err
    assert migrate.current_revision(target) == "0001"
