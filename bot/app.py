"""Assemble the python-telegram-bot Application from settings and models."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC
from typing import Any

from telegram import BotCommand, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    Defaults,
    MessageHandler,
    filters,
)

from bot import model_store
from bot.admin import AdminHandlers
from bot.backlog import UpdateBacklog, limit_for
from bot.config import Settings
from bot.cron import crontab_trigger
from bot.db.engine import create_engine, session_factory
from bot.finetune_runner import FinetuneRunner
from bot.handlers import Handlers
from bot.live_model import LiveModel
from bot.outgoing import outgoing_limiter
from bot.polling_health import PollingHealth, WatchedGetUpdatesRequest
from bot.privacy import PrivacyHandlers
from bot.ratelimit import UserRateLimiter
from bot.retention import PURGE_FIRST_S, PURGE_INTERVAL_S, PURGE_JOB_NAME, GuessRetention
from bot.service import GuessService, Predictors
from bot.update_log import LoggingApplication, user_hasher
from bot.update_processor import PerChatUpdateProcessor
from core.checkpoint import CheckpointError
from core.predict import Predictor

logger = logging.getLogger(__name__)

SERVICE_KEY = "nameorigin.service"  # bot_data key of the GuessService
POLLING_KEY = "nameorigin.polling"  # bot_data key of the PollingHealth, in polling mode
# What the handlers read: Telegram need not send the rest (edits, member changes, polls...).
ALLOWED_UPDATES = (Update.MESSAGE, Update.CALLBACK_QUERY)

# How long a stopping bot still brings pressed messages up to date (within Docker Compose's 30 s to stop).
REDRAWS_AT_STOP_S = 10.0
# How late the scheduler may reach a scheduled fine-tune and still start it (APScheduler's default: 1 s).
FINETUNE_MISFIRE_GRACE_S = 3600

COMMANDS = (
    BotCommand("guess", "guess the origin of a surname"),
    BotCommand("compare", "GRU and hand-written RNN side by side"),
    BotCommand("stats", "how often the bot was right"),
    BotCommand("help", "how to use the bot"),
    BotCommand("privacy", "what the bot keeps about you"),
    BotCommand("forget", "delete what the bot keeps about you"),
)


def load_predictors(settings: Settings) -> Predictors:
    """The starting GRU (``MODEL_DIR/gru.safetensors`` when present, else the shipped one) and the shipped RNN.

    Once the bot starts, the database's live version replaces the GRU if it differs. Raises
    ``CheckpointError`` when a checkpoint cannot load or cannot answer under ``PREDICTION_PRIOR``.
    """
    threshold, prior = settings.uncertain_below, settings.prediction_prior
    initial = model_store.resolve(settings.model_dir, model_store.initial_checkpoint(settings.model_dir))
    gru = Predictor.from_path(initial, uncertain_below=threshold, prior=prior)
    problem = model_store.unservable(gru.checkpoint.metadata, initial)
    if problem is not None:
        raise CheckpointError(problem)
    rnn = Predictor.shipped("rnn", uncertain_below=threshold, prior=prior)
    logger.info("live model %s", gru.version)
    return Predictors(gru=gru, rnn=rnn)


def build_application(
    settings: Settings, predictors: Predictors, *, webhook: bool = False
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The Application with every handler wired to one service; databases opened lazily, closed on shutdown.

    With ``webhook`` there is no updater: updates arrive through ``application.update_queue``.
    """
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    service = GuessService(predictors=predictors, sessions=sessions)
    requests = UserRateLimiter(settings.guesses_per_minute)
    handlers = Handlers(
        service,
        requests,
        UserRateLimiter(settings.button_presses_per_minute),
        retention_days=settings.guess_retention_days,
    )
    live = LiveModel(
        predictors=predictors,
        sessions=sessions,
        model_dir=settings.model_dir,
        uncertain_below=settings.uncertain_below,
        prior=settings.prediction_prior,
        adopt_max_drop=settings.finetune_max_drop,
    )
    runner = FinetuneRunner(settings, live, sessions)
    admin = AdminHandlers(runner=runner, live=live, admin_ids=settings.bot_admin_ids, limiter=requests)

    async def post_init(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await application.bot.set_my_commands(COMMANDS)
        # Answer with the database's live version from the first update; a model trained into MODEL_DIR
        # since the last start goes live now, and only now.
        await live.sync(adopt_trained=True)

    async def post_shutdown(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await handlers.redraws.finish(REDRAWS_AT_STOP_S)  # the presses are stored: their messages may lag
        await runner.stop()  # abandons a running fine-tune: the live model stays as it is
        await engine.dispose()

    salt = settings.log_salt or settings.telegram_bot_token
    # A webhook's updates come as Telegram sends them.
    backlog = None if webhook else UpdateBacklog(limit_for(settings.telegram_messages_per_second))
    log_kwargs: dict[str, object] = {
        "hash_user": user_hasher(hashlib.sha256(salt.get_secret_value().encode()).digest()),
        "model_version": lambda: service.model_version,
        "backlog": backlog,
    }
    builder = (
        ApplicationBuilder()
        .application_class(LoggingApplication, kwargs=log_kwargs)
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_api_base_url)
        .rate_limiter(outgoing_limiter(settings.telegram_messages_per_second))
        # Many users at once: one slow reply never queues the others, nor one chat's flood everyone else's.
        .concurrent_updates(PerChatUpdateProcessor())
        # A reply quotes its message in groups; one deleted meanwhile must not cost the user the answer.
        .defaults(Defaults(allow_sending_without_reply=True))
        .post_init(post_init)
        .post_shutdown(post_shutdown)
    )
    polling = PollingHealth(backlog=backlog)
    if webhook:
        builder = builder.updater(None)
    else:
        builder = builder.get_updates_request(WatchedGetUpdatesRequest(polling, backlog))
    application = builder.build()
    application.bot_data[SERVICE_KEY] = service  # for /health
    if not webhook:
        application.bot_data[POLLING_KEY] = polling
    # New messages only: an edited "/rollback X" or "/guess Rossi" is not a second request, and a business
    # account's chats are its owner's, not the bot's.
    new = filters.UpdateType.MESSAGE
    application.add_handler(CommandHandler(["start", "help"], handlers.start, filters=new))
    application.add_handler(CommandHandler("guess", handlers.guess_command, filters=new))
    application.add_handler(CommandHandler("compare", handlers.compare, filters=new))
    application.add_handler(CommandHandler("stats", handlers.stats, filters=new))
    privacy = PrivacyHandlers(service, requests, retention_days=settings.guess_retention_days)
    application.add_handler(CommandHandler("privacy", privacy.privacy, filters=new))
    application.add_handler(CommandHandler("forget", privacy.forget, filters=new))
    # In groups only /guess: there, plain text is people talking (and replies to the bot, "thanks!").
    private_text = new & filters.TEXT & ~filters.COMMAND & filters.ChatType.PRIVATE
    application.add_handler(MessageHandler(private_text, handlers.guess_text))
    application.add_handler(CallbackQueryHandler(handlers.button))
    application.add_handler(CommandHandler("retrain", admin.retrain, filters=new))
    application.add_handler(CommandHandler("models", admin.models, filters=new))
    application.add_handler(CommandHandler("rollback", admin.rollback, filters=new))
    application.add_error_handler(handlers.error)
    schedule_jobs(application, settings, admin, GuessRetention(service, settings.guess_retention_days))
    return application


def schedule_jobs(
    application: Application[Any, Any, Any, Any, Any, Any],
    settings: Settings,
    admin: AdminHandlers,
    retention: GuessRetention,
) -> None:
    """The fine-tune on ``FINETUNE_CRON`` (UTC), the periodic check for a newly live model, and the hourly
    deletion of old guesses when ``GUESS_RETENTION_DAYS`` is set."""
    job_queue = application.job_queue
    if job_queue is None:
        raise RuntimeError("the job queue is missing: install python-telegram-bot[job-queue]")
    if settings.finetune_cron:
        trigger = crontab_trigger(settings.finetune_cron, UTC)
        # APScheduler drops a run it reaches over 1 s late (a busy event loop, a clock stepped forward, a
        # suspended VM), and the next comes a day or a week later: a late run is better than none.
        job_kwargs = {"trigger": trigger, "misfire_grace_time": FINETUNE_MISFIRE_GRACE_S, "coalesce": True}
        job_queue.run_custom(admin.scheduled_finetune, job_kwargs=job_kwargs, name="finetune")
    interval = settings.model_refresh_seconds
    job_queue.run_repeating(admin.refresh_model, interval=interval, first=interval, name="refresh-model")
    if settings.guess_retention_days:
        job_queue.run_repeating(retention.purge, interval=PURGE_INTERVAL_S, first=PURGE_FIRST_S, name=PURGE_JOB_NAME)
