"""Webhook mode: the fake Bot API posts updates to the bot's own HTTP server, as Telegram does."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from bot.config import Settings
from bot.db import migrate
from bot.server import serve
from bot.service import Predictors
from tests.bot.conftest import settings_for
from tests.databases import fetch, postgres_database
from tests.fake_telegram import FakeTelegram

SECRET = "s3cret-Token_1-webhook"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def webhook_settings(telegram: FakeTelegram, tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    port = free_port()
    return settings_for(
        telegram,
        tmp_path,
        database_url=database_url,
        webhook_url=f"http://127.0.0.1:{port}/telegram/hook",
        webhook_secret=SECRET,
        webhook_listen=f"127.0.0.1:{port}",
        **overrides,
    )


@asynccontextmanager
async def serving(settings: Settings, predictors: Predictors) -> AsyncIterator[None]:
    """``serve`` in this event loop until the block ends."""
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, Predictors(gru=predictors.gru, rnn=predictors.rnn), stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def message_update(user_id: int, text: str, update_id: int = 10_000) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 0,
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Mallory"},
            "text": text,
        },
    }


async def test_webhook_answers_with_the_right_secret_and_refuses_a_wrong_one(
    telegram: FakeTelegram, tmp_path: Path, database_url: str, predictors: Predictors
) -> None:
    settings = webhook_settings(telegram, tmp_path, database_url)
    async with serving(settings, predictors):
        registered = await telegram.wait_for(lambda c: c.method == "setWebhook", timeout=30)
        assert registered.params["url"] == settings.webhook_url and registered.params["secret_token"] == SECRET
        assert not telegram.sent("getUpdates")  # webhook mode never polls

        telegram.inject_message(10, "Nakamura")  # delivered by POST with the registered secret
        reply = await telegram.wait_for(lambda c: c.method == "sendMessage" and c.params["chat_id"] in (10, "10"))
        assert "Japanese" in reply.params["text"]

        for secret in ("wrong", None):
            status = await telegram.post_update(message_update(66, "Rossi"), settings.webhook_url, secret)
            assert status == 403
        for body in ({"not": "an update"}, [], None, "text", {"update_id": 1, "message": "x"}):
            assert await telegram.post_update(body, settings.webhook_url, SECRET) == 400, body  # type: ignore[arg-type]

        async with ClientSession() as client:
            async with client.get(settings.webhook_url.replace("/telegram/hook", "/health")) as response:
                health = await response.json()
        assert response.status == 200
        assert health["mode"] == "webhook" and health["database"] == "ok"
        assert health["model_version"] == predictors.gru.version
    assert await fetch(settings.database_url, "SELECT user_id FROM guesses") == [(10,)]  # nothing from 66
    assert not [c for c in telegram.sent("sendMessage") if int(c.params["chat_id"]) == 66]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database (skips without ``TEST_POSTGRES_URL``)."""
    yield from postgres_database()


async def test_two_replica_processes_on_one_postgres_lose_no_correction(
    telegram: FakeTelegram, tmp_path: Path, postgres_url: str, predictors: Predictors
) -> None:
    first = webhook_settings(telegram, tmp_path / "a", postgres_url)
    second = webhook_settings(telegram, tmp_path / "b", postgres_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DATABASE_URL", "WEBHOOK_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=telegram.token,
        TELEGRAM_API_BASE_URL=telegram.base_url,
        DATABASE_URL=postgres_url,
        MODEL_DIR=str(tmp_path / "models"),
        WEBHOOK_URL=second.webhook_url,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_LISTEN=second.webhook_listen,
    )
    users = range(100, 140)
    async with serving(first, predictors):  # one replica in this process, the other as `nameorigin serve`
        replica = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "core.cli", "serve", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            await telegram.wait_for_count("setWebhook", 2, timeout=60)
            telegram.webhook_targets = [first.webhook_url, second.webhook_url]  # a load balancer, in turn
            for user_id in users:
                telegram.inject_message(user_id, "Rossi")
            replies = await telegram.wait_for_count("sendMessage", len(users), timeout=60)
            while len(telegram.messages) < len(users):  # a call is recorded on arrival, its message when answered
                await asyncio.sleep(0.01)
            # Every user and a friend press a button at once; the presses land on either replica.
            for reply in replies:
                chat_id = int(reply.params["chat_id"])
                markup = reply.params["reply_markup"]["inline_keyboard"]
                message_id = max(mid for (chat, mid) in telegram.messages if chat == chat_id)
                telegram.inject_callback(chat_id, chat_id, message_id, markup[0][0]["callback_data"])
                telegram.inject_callback(chat_id + 1000, chat_id, message_id, markup[1][0]["callback_data"])
            await telegram.wait_for_count("answerCallbackQuery", 2 * len(users), timeout=60)
        finally:
            replica.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(replica.communicate(), 60)
        assert replica.returncode == 0, output.decode()
    handled = Counter(target for _, target, status in telegram.deliveries if status == 200)
    deliveries = len(users) * 3  # a message and two presses per user, dealt out in turn
    assert handled[first.webhook_url] == handled[second.webhook_url] == deliveries // 2
    assert await fetch(postgres_url, "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM guesses") == [(40, 40)]
    assert await fetch(postgres_url, "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM corrections") == [(80, 80)]
