"""Admin commands and scheduled jobs: /retrain, /models, /rollback, the nightly fine-tune, model refresh."""

from __future__ import annotations

import asyncio
import logging

from telegram import Bot, Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot import admin_views
from bot.finetune_job import RunReport
from bot.finetune_runner import FinetuneRunner, RunOutcome
from bot.live_model import LiveModel

logger = logging.getLogger(__name__)


class AdminHandlers:
    """Commands only ``BOT_ADMIN_IDS`` may use, and the jobs that report to them."""

    def __init__(self, *, runner: FinetuneRunner, live: LiveModel, admin_ids: frozenset[int]) -> None:
        self.runner = runner
        self.live = live
        self.admin_ids = admin_ids

    async def _is_admin(self, update: Update) -> bool:
        user, message = update.effective_user, update.effective_message
        if user is not None and user.id in self.admin_ids:
            return True
        if message is not None:
            await message.reply_text(admin_views.NOT_ADMIN)
        logger.warning("refused admin command from user %s", user.id if user else None)
        return False

    async def retrain(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/retrain: start a fine-tune now; reply with the figures when it ends."""
        if not await self._is_admin(update) or update.effective_message is None:
            return
        task = self.runner.start(force=True)
        if task is None:
            await update.effective_message.reply_text(admin_views.ALREADY_RUNNING)
            return
        await update.effective_message.reply_text(admin_views.STARTED)
        message = update.effective_message
        # The run takes seconds to minutes: report from a task, so this update finishes now.
        context.application.create_task(self._reply_when_done(task, message.chat_id, context.bot))

    async def _reply_when_done(self, task: asyncio.Task[RunOutcome], chat_id: int, bot: Bot) -> None:
        outcome = await task
        await bot.send_message(chat_id, admin_views.run_report(outcome), parse_mode="HTML")

    async def models(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/models: versions with their figures and which one is live."""
        if not await self._is_admin(update) or update.effective_message is None:
            return
        records = await self.live.history()
        await update.effective_message.reply_html(admin_views.versions_text(records))

    async def rollback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/rollback [version]: make an earlier version live (default: the live model's parent)."""
        if not await self._is_admin(update) or update.effective_message is None:
            return
        version = context.args[0] if context.args else None
        outcome = await self.live.rollback(version)
        await update.effective_message.reply_html(admin_views.rollback_text(outcome))

    async def scheduled_finetune(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The scheduled run: fine-tune if enough new feedback arrived, then report to every admin."""
        task = self.runner.start(force=False)
        if task is None:
            logger.info("scheduled fine-tune skipped: a run is already in progress")
            return
        outcome = await task
        if isinstance(outcome, RunReport) and outcome.status == "skipped":
            logger.info("scheduled fine-tune skipped: %s", outcome.message)
            return
        text = admin_views.run_report(outcome)
        for admin_id in sorted(self.admin_ids):
            try:
                await context.bot.send_message(admin_id, text, parse_mode="HTML")
            except TelegramError as exc:  # e.g. the admin never opened a chat with the bot
                logger.warning("could not report the fine-tune to admin %s: %s", admin_id, exc)

    async def refresh_model(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Pick up a version made live elsewhere (``nameorigin finetune`` from cron, another replica)."""
        await self.live.sync()
