"""Fine-tuning through the bot: /retrain, /models, /rollback, the schedule, hot swap, a killed run."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.db import migrate, versions
from bot.db.engine import create_engine, session_factory
from bot.service import Predictors
from tests.bot.conftest import running_bot, settings_for
from tests.bot.verdicts import PORTUGUESE_AO, agreed, read_versions, store_verdicts
from tests.fake_telegram import Call, FakeTelegram

# A smaller replay sample keeps each run to a few seconds; the learning test uses the defaults.
LEAN = {"finetune_replay": 1500, "finetune_epochs": 3}


def lean_settings(telegram: FakeTelegram, tmp_path: Path, data_dir: Path, **overrides: Any) -> Settings:
    return settings_for(telegram, tmp_path, names_data_dir=data_dir, **{**LEAN, **overrides})


async def with_agreed_feedback(settings: Settings, names: Sequence[str]) -> Settings:
    """Migrate the database and store two agreeing users' "Portuguese" for each of ``names``."""
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    await store_verdicts(settings.database_url, agreed(names, "Portuguese"))
    return settings


def rows(settings: Settings, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(settings.database_url.split("///", 1)[1]) as connection:
        return connection.execute(sql).fetchall()


async def say(telegram: FakeTelegram, user_id: int, text: str, expect: str = "", timeout: float = 15.0) -> Call:
    """Send ``text`` as ``user_id`` and return the bot's next message to them containing ``expect``."""
    seen = {id(call) for call in telegram.calls}
    telegram.inject_message(user_id, text)
    return await wait_message(telegram, user_id, expect, seen, timeout)


async def wait_message(
    telegram: FakeTelegram, chat_id: int, expect: str, seen: set[int], timeout: float = 15.0
) -> Call:
    """The first message to ``chat_id`` not in ``seen`` whose text contains ``expect``."""
    return await telegram.wait_for(
        lambda c: (
            id(c) not in seen
            and c.method == "sendMessage"
            and int(c.params["chat_id"]) == chat_id
            and expect in c.params["text"]
        ),
        timeout,
    )


async def correct_through_buttons(telegram: FakeTelegram, user_id: int, name: str, language: str) -> None:
    """Ask for ``name``, open "Other…", and pick ``language``: what a user does in Telegram."""
    reply = await say(telegram, user_id, name)
    message_id = telegram.last_bot_message_id(user_id)
    other = [b for row in reply.params["reply_markup"]["inline_keyboard"] for b in row][-1]["callback_data"]
    seen = {id(call) for call in telegram.calls}
    telegram.inject_callback(user_id, user_id, message_id, other)
    opened = await telegram.wait_for(lambda c: id(c) not in seen and c.method == "editMessageReplyMarkup")
    full = {b["text"]: b["callback_data"] for row in opened.params["reply_markup"]["inline_keyboard"] for b in row}
    seen = {id(call) for call in telegram.calls}
    telegram.inject_callback(user_id, user_id, message_id, full[language])
    await telegram.wait_for(
        lambda c: id(c) not in seen and c.method == "editMessageText" and language in c.params["text"]
    )


def stored_versions(settings: Settings, user_id: int) -> list[object]:
    return [row[0] for row in rows(settings, f"SELECT model_version FROM guesses WHERE user_id = {user_id}")]


async def test_non_admins_are_refused_and_nothing_starts(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, real_data_dir: Path
) -> None:
    settings = lean_settings(telegram, tmp_path, real_data_dir)
    async with running_bot(settings, predictors):
        for command in ("/retrain", "/models", "/rollback", f"/rollback {predictors.gru.version}"):
            await say(telegram, 2, command, "only the bot's admins")
        await asyncio.sleep(0.5)
    assert not (settings.model_dir / ".finetune.lock").exists()  # no fine-tune process ever started
    assert [(r.decision, r.active) for r in await read_versions(settings.database_url)] == [("initial", True)]


async def test_admin_retrain_promotes_reports_and_the_bot_switches_models_without_restart(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, real_data_dir: Path
) -> None:
    settings = await with_agreed_feedback(lean_settings(telegram, tmp_path, real_data_dir), PORTUGUESE_AO[3:])
    shipped = predictors.gru.version
    async with running_bot(settings, predictors):
        for name in PORTUGUESE_AO[:3]:  # the rest of the loop through real button presses
            for user_id in (500, 501):
                await correct_through_buttons(telegram, user_id, name, "Portuguese")
        await say(telegram, 1, "/retrain", "Fine-tune started")
        report = (await say(telegram, 1, "/models", "Model versions")).params["text"]
        assert f"▶ <code>{shipped}</code> initial" in report

        seen: set[int] = set()
        done = await wait_message(telegram, 1, "Fine-tune promoted", seen, timeout=120)
        text = done.params["text"]
        before = predictors.gru.checkpoint.metadata.metrics["test"]["accuracy"]
        assert re.search(rf"Test accuracy: {before:.2%} → \d+\.\d\d% \([+-]0\.\d\d pts\)", text), text
        assert "Held-out feedback" in text and "40 trusted names" in text
        match = re.search(r"<code>(gru-[^<]+)</code> is now live", text)
        assert match is not None
        promoted = match.group(1)

        # The next guess is answered by the promoted model and stored with its version.
        answer = await say(telegram, 600, "Falcão")
        assert "Portuguese" in answer.params["text"].split("\n")[1]
        assert stored_versions(settings, 600) == [promoted]
        listing = (await say(telegram, 1, "/models", "Model versions")).params["text"]
        assert f"▶ <code>{promoted}</code> promoted" in listing and f"• <code>{shipped}</code> initial" in listing

        rolled = await say(telegram, 1, "/rollback", "is live again")
        assert f"<code>{shipped}</code> is live again" in rolled.params["text"]
        await say(telegram, 601, "Falcão")
        assert stored_versions(settings, 601) == [shipped]
        await say(telegram, 1, "/rollback no-such-version", "There is no version no-such-version")
        await say(telegram, 1, f"/rollback {shipped}", "already live")


async def finetune_finished() -> None:
    """Wait for the bot's running fine-tune task, then let its report go out."""
    running = [task for task in asyncio.all_tasks() if task.get_name() == "finetune"]
    await asyncio.gather(*running)
    await asyncio.sleep(0.2)


async def lock_holder(model_dir: Path, timeout: float = 30.0) -> int:
    """The pid a running fine-tune wrote into its lock file."""
    lock = model_dir / ".finetune.lock"
    for _ in range(int(timeout / 0.05)):
        text = lock.read_text().strip() if lock.exists() else ""
        if text and Path(f"/proc/{text}").exists():
            return int(text)
        await asyncio.sleep(0.05)
    raise TimeoutError("no fine-tune process took the lock")


async def test_a_killed_finetune_leaves_the_bot_and_database_intact_and_the_next_run_succeeds(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, real_data_dir: Path
) -> None:
    settings = await with_agreed_feedback(lean_settings(telegram, tmp_path, real_data_dir), PORTUGUESE_AO)
    shipped = predictors.gru.version
    async with running_bot(settings, predictors):
        await say(telegram, 1, "/retrain", "Fine-tune started")
        pid = await lock_holder(settings.model_dir)
        await say(telegram, 1, "/retrain", "already running")  # one run at a time
        await asyncio.sleep(1.5)  # well into loading data and training
        seen = {id(call) for call in telegram.calls}
        telegram.fail_next("sendMessage", 502)  # the report is worth a second try, where a guess is not
        os.kill(pid, signal.SIGKILL)
        failed = await wait_message(telegram, 1, "Fine-tune failed", seen, timeout=30)
        assert "SIGKILL" in failed.params["text"] and "live model is unchanged" in failed.params["text"]
        seen.add(id(failed))
        again = await wait_message(telegram, 1, "Fine-tune failed", seen, timeout=30)
        assert again.params["text"] == failed.params["text"]

        await say(telegram, 700, "Falcão", "Falcao")
        assert stored_versions(settings, 700) == [shipped]
        assert rows(settings, "PRAGMA integrity_check") == [("ok",)]
        failed, initial = await read_versions(settings.database_url)
        assert (failed.decision, failed.active, failed.checkpoint_path) == ("failed", False, None)
        assert "SIGKILL" in (failed.reason or "") and (initial.version, initial.active) == (shipped, True)
        assert not list(settings.model_dir.glob("versions/*.safetensors"))

        await say(telegram, 1, "/retrain", "Fine-tune started")
        seen = set()
        report = await wait_message(telegram, 1, "Fine-tune promoted", seen, timeout=120)
        assert "Test accuracy" in report.params["text"]
    decisions = [(r.decision, r.active) for r in await read_versions(settings.database_url)]
    assert decisions == [("promoted", True), ("failed", False), ("initial", False)]


async def test_stopping_the_bot_abandons_a_running_finetune_and_keeps_the_live_model(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, real_data_dir: Path
) -> None:
    settings = await with_agreed_feedback(lean_settings(telegram, tmp_path, real_data_dir), PORTUGUESE_AO)
    async with running_bot(settings, predictors):
        await say(telegram, 1, "/retrain", "Fine-tune started")
        pid = await lock_holder(settings.model_dir)
    # Leaving the block stopped the bot: the child was terminated rather than waited for.
    assert not Path(f"/proc/{pid}").exists()
    failed, initial = await read_versions(settings.database_url)
    assert failed.decision == "abandoned" and "SIGTERM" in (failed.reason or "")
    assert (initial.version, initial.active) == (predictors.gru.version, True)
    assert not list(settings.model_dir.glob("versions/*.safetensors"))
    assert not [c for c in telegram.sent("sendMessage") if "Fine-tune failed" in c.params["text"]]


async def test_the_schedule_waits_for_enough_feedback_then_reports_to_every_admin(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, real_data_dir: Path
) -> None:
    settings = lean_settings(telegram, tmp_path, real_data_dir, bot_admin_ids="1,3", finetune_min_new=20)
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    shipped = predictors.gru.version
    async with running_bot(settings, predictors) as application:
        [job] = application.job_queue.get_jobs_by_name("finetune")
        assert (job.next_t.hour, job.next_t.minute) == (3, 0)  # FINETUNE_CRON's default: nightly at 03:00 UTC

        await store_verdicts(settings.database_url, agreed(PORTUGUESE_AO[:5], "Portuguese"))  # 10 usable
        await job.run(application)  # starts the run and returns: the job queue never waits on a fine-tune
        await finetune_finished()
        assert not [c for c in telegram.sent("sendMessage") if "Fine-tune" in c.params["text"]]

        await store_verdicts(settings.database_url, agreed(PORTUGUESE_AO[5:], "Portuguese", first_user=300))
        await job.run(application)
        await finetune_finished()
        for admin_id in (1, 3):
            await wait_message(telegram, admin_id, "Fine-tune promoted", set(), timeout=5)
        await say(telegram, 799, "Falcão")
        [promoted] = stored_versions(settings, 799)
        assert promoted != shipped

        # A version made live elsewhere (another replica's /rollback) reaches this bot on its next refresh.
        engine = create_engine(settings.database_url)
        async with session_factory(engine).begin() as session:
            assert await versions.make_live(session=session, expected=promoted, version=shipped)
        await engine.dispose()
        [refresh] = application.job_queue.get_jobs_by_name("refresh-model")
        await refresh.run(application)
        await say(telegram, 800, "Falcão")
        assert stored_versions(settings, 800) == [shipped]


async def test_retrain_during_a_scheduled_run_that_skips_starts_a_forced_run_after_it(
    telegram: FakeTelegram, tmp_path: Path, predictors: Predictors, real_data_dir: Path
) -> None:
    # 20 usable verdicts, far fewer than a scheduled run needs: it skips; a forced run learns from them.
    settings = lean_settings(telegram, tmp_path, real_data_dir, finetune_min_new=1000)
    settings = await with_agreed_feedback(settings, PORTUGUESE_AO)
    async with running_bot(settings, predictors) as application:
        [job] = application.job_queue.get_jobs_by_name("finetune")
        await job.run(application)
        await say(telegram, 1, "/retrain", "The scheduled fine-tune is running")
        report = await wait_message(telegram, 1, "Fine-tune", set(), timeout=120)
        assert "Fine-tune promoted" in report.params["text"], report.params["text"]
        await finetune_finished()
    sent = [c.params["text"] for c in telegram.sent("sendMessage")]
    assert not [text for text in sent if "Fine-tune skipped" in text]  # the admin hears of their run only
    decisions = [(r.decision, r.active) for r in await read_versions(settings.database_url)]
    assert decisions == [("promoted", True), ("initial", False)]
