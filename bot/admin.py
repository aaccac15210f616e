"""Admin commands and scheduled jobs: /retrain, /models, /rollback, the nightly fine-tune, model refresh."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from telegram import Bot, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, NetworkError, TelegramError
from telegram.ext import ContextTypes

from bot import admin_views
from bot.finetune_runner import FinetuneRunner, RunOutcome
from bot.handlers import sender_key, within_limit
from bot.live_model import LiveModel
from bot.ratelimit import UserRateLimiter
from bot.run_report import RunReport
from core.metadata_fields import is_version_name

logger = logging.getLogger(__name__)


REPORT_ATTEMPTS = 3


async def send_report(bot: Bot, chat_id: int, text: str, backoff: float = 1.0) -> None:
    """Send a fine-tune report, again after a network failure or a server error.

    The bot's own retries never send a message twice (a user would see a guess twice); a report
    twice is harmless, and none at all leaves the admins not knowing how the night's run went.
    """
    for attempt in range(1, REPORT_ATTEMPTS + 1):
        try:
            await bot.send_message(chat_id, text, parse_mode="HTML")
            return
        except BadRequest:  # the report itself is refused: the same again fails the same
            raise
        except NetworkError:
            if attempt == REPORT_ATTEMPTS:
                raise
            await asyncio.sleep(backoff * attempt)


@dataclass
class _Run:
    """Who hears of one fine-tune run when it ends, kept per run so a run starting later cannot take it over."""

    scheduled: bool  # the scheduled run reports to every admin; a /retrain only to the chats that asked
    requested_by: set[int] = field(default_factory=set)
    # /retrain came while the scheduled (unforced) run was going: if it skips, a forced run follows.
    forced_run_wanted: bool = False


class AdminHandlers:
    """Commands only ``BOT_ADMIN_IDS`` may use, and the jobs that report to them."""

    def __init__(
        self,
        *,
        runner: FinetuneRunner,
        live: LiveModel,
        admin_ids: frozenset[int],
        limiter: UserRateLimiter,
    ) -> None:
        self.runner = runner
        self.live = live
        self.admin_ids = admin_ids
        # The incoming limit of /guess and the rest: a refusal is a reply too, and a non-admin sending /models
        # again and again would otherwise spend the bot's outgoing budget, holding up everyone's answers.
        self.limiter = limiter
        self._current: _Run | None = None  # the run in progress, if this bot started it
        self._reporters: set[asyncio.Task[None]] = set()

    async def _is_admin(self, update: Update) -> bool:
        user, message = update.effective_user, update.effective_message
        if user is not None and user.id in self.admin_ids:
            return True
        # In groups, silence: a bare /retrain there may be meant for another bot, and anyone could
        # otherwise make the bot post a refusal per message.
        if message is not None and message.chat.type == ChatType.PRIVATE:
            # Over the limit: told once a minute, as for guesses.
            if user is None or await within_limit(self.limiter, message, sender_key(message, user)):
                await message.reply_text(admin_views.NOT_ADMIN)
        logger.warning("refused an admin command from a non-admin")  # the update's log line has the hashed user
        return False

    def _start(self, bot: Bot, *, force: bool, requested_by: set[int] | None = None) -> bool:
        """Start a run whose report goes out when it ends; False when one is already running."""
        task = self.runner.start(force=force)
        if task is None:
            return False
        run = _Run(scheduled=not force, requested_by=set(requested_by or ()))
        self._current = run
        # A plain task, not the Application's: stopping the bot must not wait for a fine-tune.
        reporter = asyncio.create_task(self._report_when_done(task, run, bot))
        self._reporters.add(reporter)
        reporter.add_done_callback(self._reporters.discard)
        return True

    async def _report_when_done(self, task: asyncio.Task[RunOutcome], run: _Run, bot: Bot) -> None:
        outcome = await task
        if self._current is run:
            self._current = None
        if self.runner.stopping:
            return
        chats = set(run.requested_by)
        if isinstance(outcome, RunReport) and outcome.status in ("skipped", "busy"):
            logger.info("fine-tune %s: %s", outcome.status, outcome.message)  # only who asked hears of it
            if run.forced_run_wanted and self._start(bot, force=True, requested_by=chats):
                return  # the forced run that /retrain asked for reports to them instead
        elif run.scheduled:
            chats |= self.admin_ids  # every admin hears how a scheduled run went
        text = admin_views.run_report(outcome)
        for chat_id in sorted(chats):
            try:
                await send_report(bot, chat_id, text)
            except TelegramError as exc:  # e.g. an admin who never opened a chat with the bot
                # No chat id: logs name users only by a keyed hash, admins too.
                logger.warning("could not send the fine-tune report to one of its %d chats: %s", len(chats), exc)

    async def retrain(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/retrain: start a fine-tune now; the figures follow when it ends."""
        message = update.effective_message
        if not await self._is_admin(update) or message is None:
            return
        if self.runner.stopping:  # no run starts, and a running one's report is no longer sent
            await message.reply_text(admin_views.STOPPING)
            return
        if self._start(context.bot, force=True, requested_by={message.chat_id}):
            await message.reply_text(admin_views.STARTED)
            return
        run = self._current  # the runner refused: a run this bot started is going
        if run is None:
            await message.reply_text(admin_views.ALREADY_RUNNING)
            return
        run.requested_by.add(message.chat_id)  # the run already going reports here too
        if run.scheduled:
            run.forced_run_wanted = True
            await message.reply_text(admin_views.SCHEDULED_RUNNING)
        else:
            await message.reply_text(admin_views.ALREADY_RUNNING)

    async def models(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/models: versions with their figures and which one is live."""
        if not await self._is_admin(update) or update.effective_message is None:
            return
        records, total = await self.live.history()
        await update.effective_message.reply_html(admin_views.versions_text(records, total))

    async def rollback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/rollback [version]: make an earlier version live (default: the live model's parent)."""
        if not await self._is_admin(update) or update.effective_message is None:
            return
        version = context.args[0] if context.args else None
        if version is not None and not is_version_name(version):  # never echo arbitrary text (or 4,000 characters)
            await update.effective_message.reply_html(admin_views.NOT_A_VERSION)
            return
        outcome = await self.live.rollback(version)
        await update.effective_message.reply_html(admin_views.rollback_text(outcome))

    async def scheduled_finetune(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The scheduled run: starts it and returns; the run itself decides whether enough feedback arrived."""
        if not self._start(context.bot, force=False):
            logger.info("scheduled fine-tune not started: a run is already in progress")

    async def refresh_model(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Pick up a version made live elsewhere (``nameorigin finetune`` from cron, another replica)."""
        await self.live.sync()
