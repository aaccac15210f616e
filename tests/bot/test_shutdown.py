"""SIGTERM to ``nameorigin serve``: in-flight updates finish, the fine-tune is abandoned, the database closes."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from bot.db import migrate
from tests.bot.test_retrain import lock_holder
from tests.bot.test_serve import serve_env, start_serve
from tests.bot.verdicts import PORTUGUESE_AO, agreed, read_versions, store_verdicts
from tests.fake_telegram import FakeTelegram


async def test_sigterm_finishes_in_flight_updates_abandons_the_finetune_and_closes_the_database(
    telegram: FakeTelegram, tmp_path: Path, real_data_dir: Path
) -> None:
    env = serve_env(telegram, tmp_path)
    # A fine-tune far longer than the test: on an idle machine the default 4 epochs ended during the slow reply.
    env.update(BOT_ADMIN_IDS="1", NAMES_DATA_DIR=str(real_data_dir), FINETUNE_REPLAY="1500", FINETUNE_EPOCHS="200")
    database = tmp_path / "data" / "bot.db"
    await asyncio.to_thread(migrate.upgrade, env["DATABASE_URL"])
    await store_verdicts(env["DATABASE_URL"], agreed(PORTUGUESE_AO, "Portuguese"))
    process = await start_serve(telegram, env, tmp_path)
    try:
        telegram.inject_message(1, "/retrain")
        child = await lock_holder(tmp_path / "models")
        telegram.delay_next("sendMessage", 2.0)  # Telegram is slow to accept this reply
        telegram.inject_message(7, "Nakamura")
        await telegram.wait_for(lambda c: c.method == "sendMessage" and int(c.params["chat_id"]) == 7, timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)  # while the reply is in flight and the fine-tune runs
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    log = output.decode()
    assert process.returncode == 0, log
    # The in-flight update finished: its structured log line came after the slow reply, with success.
    records = [json.loads(line[line.index("{") :]) for line in log.splitlines() if '"event": "update"' in line]
    nakamura = [r for r in records if r.get("kind") == "message"]
    assert len(nakamura) == 1 and nakamura[0]["outcome"] == "ok" and nakamura[0]["latency_ms"] >= 2000
    assert len(nakamura[0]["user"]) == 16 and nakamura[0]["model_version"].startswith("gru-")  # id hashed
    assert not Path(f"/proc/{child}").exists()
    failed, initial = await read_versions(env["DATABASE_URL"])
    assert failed.decision == "abandoned" and "SIGTERM" in (failed.reason or "") and initial.active
    # SQLite removes the write-ahead log when the last connection closes cleanly.
    assert not database.with_name("bot.db-wal").exists()
