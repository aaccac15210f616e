"""``nameorigin serve`` as a real process against the fake Bot API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

from bot.db import migrate
from tests.bot.test_webhook import free_port
from tests.fake_telegram import FakeTelegram
from tests.test_deploy import arguments


def serve_env(telegram: FakeTelegram, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DATABASE_URL", "BOT_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=telegram.token,
        TELEGRAM_API_BASE_URL=telegram.base_url,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'data' / 'bot.db'}",
        MODEL_DIR=str(tmp_path / "models"),
    )
    return env


async def start_serve(
    telegram: FakeTelegram, env: dict[str, str], cwd: Path, *, verbose: bool = False
) -> asyncio.subprocess.Process:
    """``nameorigin [-v] serve`` as its own process; returns once it has started (its commands are set)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", *(["-v"] if verbose else []), "serve", env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    await telegram.wait_for(lambda c: c.method == "setMyCommands", timeout=60)
    return process


def docker_healthcheck(port: int) -> list[str]:
    """The Dockerfile's HEALTHCHECK command, aimed at ``port``."""
    [healthcheck] = arguments("HEALTHCHECK")
    command: list[str] = json.loads(healthcheck.split("CMD", 1)[1])
    command[0] = sys.executable if command[0] == "python" else command[0]
    return [part.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for part in command]


async def test_serve_answers_and_records_a_press(telegram: FakeTelegram, tmp_path: Path) -> None:
    port = free_port()
    env = {**serve_env(telegram, tmp_path), "HEALTH_LISTEN": f"127.0.0.1:{port}"}
    healthcheck = docker_healthcheck(port)
    assert subprocess.run(healthcheck, capture_output=True, timeout=30).returncode != 0  # nothing listens yet
    process = await start_serve(telegram, env, tmp_path, verbose=True)  # every library's INFO lines too
    try:
        # The image's HEALTHCHECK, as Docker would run it, against polling mode's /health.
        for _ in range(100):
            result = await asyncio.to_thread(subprocess.run, healthcheck, capture_output=True, timeout=30)
            if result.returncode == 0:
                break
            await asyncio.sleep(0.1)
        assert result.returncode == 0, result.stderr
        telegram.inject_message(7, "/start")
        telegram.inject_message(7, "/guess Dostoevsky")
        telegram.inject_message(8, "Nakamura")
        replies = await telegram.wait_for_count("sendMessage", 3, timeout=30)
        texts = {int(r.params["chat_id"]): r.params["text"] for r in replies}
        assert "Japanese" in texts[8]
        guess = next(r for r in replies if "<b>Dostoevsky</b>" in r.params["text"])
        confirm = guess.params["reply_markup"]["inline_keyboard"][0][0]
        assert confirm["text"] == "✅ Russian"
        telegram.inject_callback(7, 7, telegram.last_bot_message_id(7), confirm["callback_data"])
        await telegram.wait_for(lambda c: c.method == "editMessageText", timeout=30)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, output.decode()
    assert telegram.token not in output.decode()  # the token never reaches the logs
    assert telegram.token.partition(":")[2] not in output.decode()
    with sqlite3.connect(tmp_path / "data" / "bot.db") as connection:
        assert connection.execute("SELECT journal_mode FROM pragma_journal_mode").fetchone() == ("wal",)
        assert connection.execute("SELECT surname FROM guesses ORDER BY surname").fetchall() == [
            ("Dostoevsky",),
            ("Nakamura",),
        ]
        assert connection.execute("SELECT user_id, language, confirmed FROM corrections").fetchall() == [
            (7, "Russian", 1)
        ]


async def test_serve_without_a_token_says_so_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", "serve", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert stderr.decode().strip() == ("nameorigin serve: error: invalid configuration: TELEGRAM_BOT_TOKEN is required")


async def serve_until_it_exits(env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """``nameorigin serve`` that is expected to give up; returns its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", "serve", env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_a_rejected_token_is_one_line_that_never_shows_it(telegram: FakeTelegram, tmp_path: Path) -> None:
    wrong = "999:Wrong-token-that-must-stay-secret"
    status, stdout, stderr = await serve_until_it_exits(
        {**serve_env(telegram, tmp_path), "TELEGRAM_BOT_TOKEN": wrong}, tmp_path
    )
    assert status == 2
    assert stderr.strip().splitlines()[-1] == (
        "nameorigin serve: error: cannot start the bot: "
        "Telegram rejected TELEGRAM_BOT_TOKEN (mistyped or revoked? @BotFather shows the current one), "
        f"or TELEGRAM_API_BASE_URL {telegram.base_url} is no Bot API"
    )
    assert "Traceback" not in stderr
    assert "Wrong-token" not in stdout + stderr


async def test_a_taken_port_is_one_line(telegram: FakeTelegram, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        status, _, stderr = await serve_until_it_exits(
            {**serve_env(telegram, tmp_path), "HEALTH_LISTEN": listen}, tmp_path
        )
    assert status == 2
    assert stderr.strip().splitlines()[-1] == (
        f"nameorigin serve: error: cannot start the bot: cannot listen on {listen}: Address already in use"
    )
    assert "Traceback" not in stderr


async def test_db_upgrade_command(tmp_path: Path) -> None:
    env = dict(os.environ, DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", "db", "upgrade", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == f"database at revision {migrate.head_revision()}"
