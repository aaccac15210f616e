"""``nameorigin doctor`` names exactly what is missing."""

from __future__ import annotations

import asyncio
import http.server
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from bot import model_store
from bot.app import load_predictors
from bot.config import Settings, load_settings
from bot.db import migrate
from bot.db.engine import create_engine, session_factory
from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.cli import main
from core.predict import shipped_checkpoint_path
from tests.bot.commands import nameorigin
from tests.bot.models import trained_copy
from tests.fake_telegram import FakeTelegram

# Nothing listens on port 9 of loopback: doctor's Telegram check stays on this machine unless a test says otherwise.
NO_BOT_API = "http://127.0.0.1:9/bot"


def doctor(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return nameorigin(cwd, "doctor", **{"TELEGRAM_API_BASE_URL": NO_BOT_API, **env})


def test_a_fresh_install_is_told_the_token_and_dataset_are_missing(tmp_path: Path) -> None:
    result = doctor(tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    problems = [line for line in lines if line.startswith("✗")]
    assert problems == [
        "✗ configuration: TELEGRAM_BOT_TOKEN is required",
        "✗ dataset: dataset folder data/names does not exist: check the path, or fetch the files there with "
        "'nameorigin data download --dir data/names' (fine-tuning needs it; guessing does not)",
    ]
    assert "✓ database: data/nameorigin.db will be created at the first start" in lines
    assert "✓ model folder: data/models will be created by the first fine-tune" in lines
    assert not any(" mode: " in line for line in lines)  # unknown while the bot's own settings are invalid
    assert any(line.startswith("✓ model: gru-") and "shipped:gru" in line for line in lines)
    assert "! admins: BOT_ADMIN_IDS is empty: nobody can use /retrain, /models, /rollback" in lines
    assert not (tmp_path / "data").exists()  # checking created nothing


@pytest.fixture
def settings_only_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in ``tmp_path`` with no bot setting from the shell, for the in-process checks below."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", NO_BOT_API)
    return tmp_path


async def run_doctor(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str) -> list[str]:
    """``nameorigin doctor`` in this process with ``env`` set; its lines. Off the loop: it runs one of its own."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    status = await asyncio.to_thread(main, ["doctor"])
    lines = capsys.readouterr().out.splitlines()
    assert status == (1 if any(line.startswith("✗") for line in lines) else 0)
    return lines


async def test_a_complete_setup_passes_and_an_unreachable_database_is_named(
    telegram: FakeTelegram,
    settings_only_from: Path,
    real_data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite+aiosqlite:///{settings_only_from / 'bot.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    settings = {
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_BASE_URL": telegram.base_url,
        "DATABASE_URL": url,
        "NAMES_DATA_DIR": str(real_data_dir),
        "BOT_ADMIN_IDS": "1",
    }
    lines = await run_doctor(monkeypatch, capsys, **settings)  # the fake Bot API answers meanwhile
    assert all(line.startswith("✓") for line in lines), lines
    assert "✓ telegram: the token belongs to @nameorigin_bot" in lines

    broken = await run_doctor(monkeypatch, capsys, DATABASE_URL="postgresql+asyncpg://bot:secret@127.0.0.1:1/bot")
    [line] = [line for line in broken if line.startswith("✗")]
    assert line.startswith("✗ database: cannot connect to postgresql+asyncpg://bot:***@127.0.0.1:1/bot")

    (settings_only_from / "garbage.db").write_bytes(b"not a database at all" * 100)
    garbage = await run_doctor(monkeypatch, capsys, DATABASE_URL="sqlite+aiosqlite:///garbage.db")
    [line] = [line for line in garbage if line.startswith("✗")]
    assert not any("Background on this error" in line for line in garbage)  # SQLAlchemy's second line
    assert (
        line.startswith("✗ database: cannot connect to sqlite+aiosqlite:///garbage.db: ")
        and "is not a database" in line
    )

    with sqlite3.connect(settings_only_from / "bot.db") as connection:  # as a newer release would leave it
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    newer = await run_doctor(monkeypatch, capsys, **settings)
    assert "✗ database: at revision 9999, which this nameorigin does not know: a newer version migrated it" in newer


async def test_a_token_telegram_rejects_or_a_bot_api_out_of_reach_is_named_without_the_token(
    telegram: FakeTelegram,
    settings_only_from: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = {"TELEGRAM_BOT_TOKEN": "999:Revoked-secret"}
    rejected = await run_doctor(monkeypatch, capsys, **token, TELEGRAM_API_BASE_URL=telegram.base_url)
    rejection = (
        "Telegram rejected TELEGRAM_BOT_TOKEN (mistyped or revoked? @BotFather shows the current one), "
        f"or TELEGRAM_API_BASE_URL {telegram.base_url} is no Bot API"  # a self-hosted or test server
    )
    assert f"✗ telegram: {rejection}" in rejected
    out_of_reach = await run_doctor(monkeypatch, capsys, **token, TELEGRAM_API_BASE_URL=NO_BOT_API)
    [line] = [line for line in out_of_reach if " telegram: " in line]
    assert line.startswith(f"✗ telegram: cannot reach the Telegram Bot API at {NO_BOT_API}: ")
    assert "Revoked-secret" not in "\n".join(rejected + out_of_reach)


async def test_a_model_that_cannot_apply_the_configured_prior_is_a_problem(
    settings_only_from: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = load_checkpoint(shipped_checkpoint_path("gru"))
    older = replace(shipped.metadata, version="gru-before-priors", class_prior=None)
    save_checkpoint(settings_only_from / "models" / "gru.safetensors", shipped.model, older)
    env = {"TELEGRAM_BOT_TOKEN": "1:x", "MODEL_DIR": "models"}
    lines = await run_doctor(monkeypatch, capsys, **env, PREDICTION_PRIOR="uniform")
    [model] = [line for line in lines if " model: " in line]
    assert model.startswith("✗ model: model gru-before-priors does not record its training class prior")
    lines = await run_doctor(monkeypatch, capsys, **env, PREDICTION_PRIOR="dataset")
    assert any(line.startswith("✓ model: gru-before-priors loads") for line in lines)


def test_a_database_url_the_bot_cannot_use_stops_the_checks_that_need_it(
    settings_only_from: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///bot.db")
    assert main(["doctor"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "✗ configuration: DATABASE_URL uses the driver 'sqlite'; the bot needs one of sqlite+aiosqlite, "
        "postgresql+asyncpg, e.g. sqlite+aiosqlite:///data/nameorigin.db or postgresql+asyncpg://user:password@host/db",
        "✗ other checks: skipped until the configuration above is valid",
    ]


def test_the_env_example_copied_as_it_is_is_told_to_fill_in_the_token(
    settings_only_from: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path(__file__).parents[2] / ".env.example"
    (settings_only_from / ".env").write_text(example.read_text())
    assert main(["doctor"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        "✗ configuration: TELEGRAM_BOT_TOKEN is still the placeholder from .env.example: "
        "put in the token @BotFather gave you"
    )


def test_an_unusable_model_folder_is_a_problem_and_without_a_schedule_a_missing_dataset_only_limits(
    settings_only_from: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (settings_only_from / "a-file").write_text("not a folder")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("MODEL_DIR", "a-file/models")
    monkeypatch.setenv("NAMES_DATA_DIR", "nowhere")
    monkeypatch.setenv("FINETUNE_CRON", "")
    assert main(["doctor"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "✓ mode: long polling" in lines
    assert "✗ model folder: MODEL_DIR a-file/models: a-file is not a folder (fine-tuning writes there)" in lines
    [dataset] = [line for line in lines if " dataset: " in line]
    assert dataset.startswith("! dataset: dataset folder nowhere does not exist")


def test_doctor_stops_quietly_when_the_reader_has_left(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `nameorigin doctor | head -0`
    clean = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "core.cli", "doctor"], env=clean, cwd=tmp_path,
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == ""


@pytest.mark.parametrize(("live_in_database", "placed"), [(False, "rnn"), (True, "rnn"), (True, "folder")])
def test_a_model_in_model_dir_that_is_no_gru_is_a_problem(
    live_in_database: bool,
    placed: str,
    settings_only_from: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("MODEL_DIR", "models")
    if live_in_database:  # a bot that has run: the shipped GRU is live, and `serve` still starts with the file
        url = f"sqlite+aiosqlite:///{settings_only_from / 'data' / 'nameorigin.db'}"
        migrate.upgrade(url)
        asyncio.run(register_the_live_model(url, settings_only_from / "models"))
    trained = settings_only_from / "models" / "gru.safetensors"
    if placed == "folder":  # what Docker leaves when it mounts a file that does not exist
        trained.mkdir(parents=True)
    else:
        trained.parent.mkdir(exist_ok=True)
        trained.write_bytes(shipped_checkpoint_path("rnn").read_bytes())
    assert main(["doctor"]) == 1
    [model] = [line for line in capsys.readouterr().out.splitlines() if " model: " in line]
    problem = "is a directory, not a file" if placed == "folder" else "holds a rnn model (rnn-"
    assert model.startswith("✗ model: ") and f"models/gru.safetensors {problem}" in model
    assert model.endswith("(`serve` refuses to start until it is replaced or removed)")
    with pytest.raises(CheckpointError, match=re.escape(problem)):
        load_predictors(load_settings(Settings))  # as `serve` starts


async def register_the_live_model(url: str, model_dir: Path) -> None:
    engine = create_engine(url)
    try:
        await model_store.live_record(session_factory(engine), model_dir)
    finally:
        await engine.dispose()


class NotTheBotApi(http.server.BaseHTTPRequestHandler):
    """A web server that is no Bot API: every path is a plain-text 404."""

    def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
        body = b"404: Not Found"
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


async def test_a_url_that_is_no_bot_api_is_one_line_without_the_library_traceback(
    settings_only_from: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotTheBotApi)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}/bot"
        lines = await run_doctor(monkeypatch, capsys, TELEGRAM_BOT_TOKEN="1:x", TELEGRAM_API_BASE_URL=base_url)
    finally:
        server.shutdown()
        server.server_close()  # the listening socket too, not left open for the garbage collector
    [line] = [line for line in lines if " telegram: " in line]
    assert line.startswith("✗ telegram: ")
    assert not [r for r in caplog.records if r.name.startswith("telegram")]  # no "invalid JSON" traceback


async def test_a_verbose_doctor_never_prints_the_token(
    telegram: FakeTelegram,
    settings_only_from: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", telegram.token)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", telegram.base_url)
    caplog.set_level(logging.INFO)  # as `nameorigin -v doctor` logs: httpx's lines name each URL, token and all
    await asyncio.to_thread(main, ["-v", "doctor"])
    assert "✓ telegram: the token belongs to @nameorigin_bot" in capsys.readouterr().out
    assert telegram.token not in caplog.text


def test_blank_folder_settings_mean_the_defaults_not_the_working_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAMES_DATA_DIR", "")  # as `nameorigin eval` reads it: data/names
    monkeypatch.setenv("MODEL_DIR", " ")
    main(["doctor"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("✗ dataset: dataset folder data/names does not exist") for line in lines)
    assert "✓ model folder: data/models will be created by the first fine-tune" in lines


async def test_a_trained_model_far_worse_than_the_live_one_is_named_as_staying_out(
    settings_only_from: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trained_copy(settings_only_from / "models" / "gru.safetensors", "gru-one-epoch", test_accuracy=0.619)
    env = {"TELEGRAM_BOT_TOKEN": "1:x", "MODEL_DIR": "models", "FINETUNE_MAX_DROP": "0.5"}
    [model] = [line for line in await run_doctor(monkeypatch, capsys, **env) if " model: " in line]
    assert model.startswith("! model: gru-") and "loads from shipped:gru, test accuracy 87.82%" in model
    assert "gru-one-epoch in models/gru.safetensors stays out: its test accuracy, 61.90%, is 25.92 points" in model
    trained_copy(settings_only_from / "models" / "gru.safetensors", "gru-retrained", test_accuracy=0.8760)
    [model] = [line for line in await run_doctor(monkeypatch, capsys, **env) if " model: " in line]
    assert model == "✓ model: gru-retrained loads from gru.safetensors, test accuracy 87.60%"  # goes live at start
