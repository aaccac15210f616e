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
        self._requested_by: set[int] = set()  # chats that asked for the current run with /retrain
        self._scheduled = False  # whether the current run is the scheduled one (reported to every admin)
        self._reporters: set[asyncio.Task[None]] = set()

    async def _is_admin(self, update: Update) -> bool:
        user, message = update.effective_user, update.effective_message
        if user is not None and user.id in self.admin_ids:
            return True
        if message is not None:
            await message.reply_text(admin_views.NOT_ADMIN)
        logger.warning("refused an admin command from a non-admin")  # the update's log line has the hashed user
        return False

    def _start(self, bot: Bot, *, force: bool) -> bool:
        """Start a run whose report goes out when it ends; False when one is already running."""
        task = self.runner.start(force=force)
        if task is None:
            return False
        self._requested_by, self._scheduled = set(), not force
        # A plain task, not the Application's: stopping the bot must not wait for a fine-tune.
        reporter = asyncio.create_task(self._report_when_done(task, bot))
        self._reporters.add(reporter)
        reporter.add_done_callback(self._reporters.discard)
        return True

    async def _report_when_done(self, task: asyncio.Task[RunOutcome], bot: Bot) -> None:
        outcome = await task
        chats = set(self._requested_by)
        if isinstance(outcome, RunReport) and outcome.status in ("skipped", "busy"):
            logger.info("fine-tune %s: %s", outcome.status, outcome.message)  # only who asked hears of it
        elif self._scheduled:
            chats |= self.admin_ids  # every admin hears how a scheduled run went
        if self.runner.stopping:
            return
        text = admin_views.run_report(outcome)
        for chat_id in sorted(chats):
            try:
                await bot.send_message(chat_id, text, parse_mode="HTML")
            except TelegramError as exc:  # e.g. an admin who never opened a chat with the bot
                logger.warning("could not send the fine-tune report to %s: %s", chat_id, exc)

    async def retrain(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/retrain: start a fine-tune now; the figures follow when it ends."""
        message = update.effective_message
        if not await self._is_admin(update) or message is None:
            return
        started = self._start(context.bot, force=True)
        self._requested_by.add(message.chat_id)  # a run already going reports here too
        await message.reply_text(admin_views.STARTED if started else admin_views.ALREADY_RUNNING)

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
        """The scheduled run: starts it and returns; the run itself decides whether enough feedback arrived."""
        if not self._start(context.bot, force=False):
            logger.info("scheduled fine-tune not started: a run is already in progress")

    async def refresh_model(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Pick up a version made live elsewhere (``nameorigin finetune`` from cron, another replica)."""
        await self.live.sync()
