"""``nameorigin serve``: long polling or webhooks, a /health endpoint, and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import signal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from telegram import Update
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application

from bot.app import ALLOWED_UPDATES, POLLING_KEY, SERVICE_KEY, build_application, load_predictors
from bot.config import DEFAULT_API_BASE_URL, Settings
from bot.db import migrate
from bot.polling_health import PollingHealth
from bot.redaction import redact, redacted_logs, secrets_of
from bot.service import GuessService, Predictors
from bot.throttled_log import ThrottledWarning
from bot.update_log import UPDATE_LOGGER
from core.paths import file_in_the_way

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HEALTH_TIMEOUT_S = 2.0


class StartupError(Exception):
    """The bot could not start: Telegram refused it or was unreachable, or its HTTP port was taken."""


class PollingStopped(Exception):
    """Long polling ended for good while the bot ran (Telegram rejected the token): it could answer no one."""


# The task in which python-telegram-bot polls (its name for it). It ends only when polling is given up for
# good: an InvalidToken (the token revoked at @BotFather), or an error outside Telegram's own.
POLLING_TASK_NAME = "Updater:start_polling:polling_task"


def _without_password(url: str) -> str:
    """``url`` with any password in it shown as ``***``, as database URLs are."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:  # a URL urlsplit cannot read: hide whatever stands before an "@"
        return re.sub(r"//[^/]*@", "//***@", url)
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))


def startup_failure(exc: TelegramError, settings: Settings) -> StartupError:
    """A one-line account of a Bot API failure while starting, which never contains the token or a password."""
    api = _without_password(settings.telegram_api_base_url)
    if isinstance(exc, InvalidToken):
        message = "Telegram rejected TELEGRAM_BOT_TOKEN (mistyped or revoked? @BotFather shows the current one)"
        if settings.telegram_api_base_url != DEFAULT_API_BASE_URL:  # PTB says InvalidToken for any 404 too
            message += f", or TELEGRAM_API_BASE_URL {api} is no Bot API"
    elif isinstance(exc, NetworkError):  # also TimedOut
        message = f"cannot reach the Telegram Bot API at {api}: {exc.message}"
    else:  # e.g. setWebhook refusing WEBHOOK_URL
        message = f"the Telegram Bot API refused to start the bot: {exc.message}"
    return StartupError(redact(message, secrets_of(settings)))


def _split_listen(listen: str) -> tuple[str, int]:
    host, port = listen.rsplit(":", 1)
    return host.strip("[]"), int(port)  # [::]:8080 binds every IPv6 address


def http_app(application: Application[Any, Any, Any, Any, Any, Any], settings: Settings) -> web.Application:
    """GET /health always; POST to the webhook path (secret checked) in webhook mode."""
    service: GuessService = application.bot_data[SERVICE_KEY]
    polling: PollingHealth | None = application.bot_data.get(POLLING_KEY)
    app = web.Application()

    async def health(request: web.Request) -> web.Response:
        status, database = 200, "ok"
        try:
            await asyncio.wait_for(service.ping_database(), HEALTH_TIMEOUT_S)
        except Exception as exc:  # any failure to reach the database makes the bot unhealthy
            status, database = 503, f"unreachable: {type(exc).__name__}"
        else:
            problem = service.write_problem()
            if problem is not None:  # it answers, but each guess fails: disk full, volume read-only
                status, database = 503, f"writes failing: {problem}"
        hearing = polling.problem() if polling is not None else None
        if hearing is not None:  # it runs, but hears no one, or only some
            status = 503
        body = {
            "status": "ok" if status == 200 else "unhealthy",
            "mode": "webhook" if settings.webhook_url else "polling",
            "running": application.running,
            "database": database,
            "model_version": service.model_version,
        }
        if polling is not None:
            body["polling"] = hearing or "ok"
        return web.json_response(body, status=status if application.running else 503)

    app.router.add_get("/health", health)
    if settings.webhook_url:
        assert settings.webhook_secret is not None  # Settings enforces it
        secret = settings.webhook_secret.get_secret_value().encode()
        refused = ThrottledWarning(logger, "webhook request with a wrong or missing secret from %s")

        async def receive(request: web.Request) -> web.Response:
            given = request.headers.get(SECRET_HEADER, "")
            if not given.isascii() or not hmac.compare_digest(given.encode(), secret):
                refused(request.remote)
                return web.Response(status=403, text="forbidden")
            try:
                data = await request.json()
                update = Update.de_json(data, application.bot) if isinstance(data, dict) else None
            except Exception:  # any malformed body is the sender's error, never a 500
                update = None
            if update is None:
                return web.Response(status=400, text="not an update")
            await application.update_queue.put(update)
            return web.Response(text="ok")

        app.router.add_post(settings.webhook_path, receive)
    return app


async def _start_http(
    application: Application[Any, Any, Any, Any, Any, Any], settings: Settings
) -> web.AppRunner | None:
    listen = settings.webhook_listen if settings.webhook_url else settings.health_listen
    if not listen:
        return None
    runner = web.AppRunner(http_app(application, settings), access_log=None)
    await runner.setup()
    host, port = _split_listen(listen)
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:  # the port is taken, or the address is not this machine's
        await runner.cleanup()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartupError(f"cannot listen on {listen}: {reason}") from exc
    logger.info("listening on %s (%s)", listen, "webhook and /health" if settings.webhook_url else "/health")
    return runner


async def serve(settings: Settings, predictors: Predictors, stop: asyncio.Event | None = None) -> None:
    """Run the bot until SIGTERM or SIGINT (or ``stop`` is set), then stop gracefully.

    Stopping takes no new updates, lets the updates in flight finish and their replies go out,
    abandons a running fine-tune (the live model is untouched), and closes the database.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    webhook = bool(settings.webhook_url)
    application = build_application(settings, predictors, webhook=webhook)
    http: web.AppRunner | None = None
    started = False
    failure: PollingStopped | None = None
    try:
        async with application:  # initialize() and, on the way out, shutdown()
            assert application.post_init is not None and application.post_shutdown is not None
            try:
                await application.post_init(application)
                http = await _start_http(application, settings)
                before = asyncio.all_tasks()
                await _start_receiving(application, settings)
                # This bot's own polling task (another bot may run in the same loop, as in the tests).
                new = asyncio.all_tasks() - before
                polling = next((task for task in new if task.get_name() == POLLING_TASK_NAME), None)
                await application.start()
                started = True
                logger.info("serving with %s", "webhooks" if webhook else "long polling")
                failure = await _until_stopped_or_deaf(stop, polling, settings)
                logger.info("stopping: finishing the updates in flight")
                if application.updater is not None and application.updater.running:
                    try:
                        await application.updater.stop()  # no new updates; confirms the ones already fetched
                    except Exception:  # the polling loop's own end, already reported
                        if failure is None:
                            raise
                if http is not None and webhook:
                    await http.cleanup()  # Telegram retries what it could not deliver, elsewhere or later
                    http = None
                await application.stop()  # waits for the updates in flight and their replies
            finally:
                # Also after a failed start (port taken, webhook refused): no fine-tune or connection left behind.
                await application.post_shutdown(application)
                if http is not None:
                    await http.cleanup()
    except TelegramError as exc:
        if started:
            raise
        raise startup_failure(exc, settings) from exc
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    logger.info("stopped")
    if failure is not None:  # a supervisor should see a failure, and restart the bot or tell someone
        raise failure


async def _until_stopped_or_deaf(
    stop: asyncio.Event, polling: asyncio.Task[Any] | None, settings: Settings
) -> PollingStopped | None:
    """Wait for ``stop``; or, in polling mode, for polling to end for good, which is returned as the reason.

    A bot whose polling ended would otherwise run on, and /health answer 200, without ever hearing a user again.
    """
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({stopping} | ({polling} if polling else set()), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if polling is None or not polling.done() or stop.is_set() or polling.cancelled():
        return None
    error = polling.exception()
    if error is None:
        reason = "python-telegram-bot ended it"
    elif isinstance(error, TelegramError):
        reason = str(startup_failure(error, settings))
    else:
        reason = redact(f"{type(error).__name__}: {error}", secrets_of(settings))
    logger.error("long polling stopped for good, so the bot can answer no one; stopping: %s", reason)
    return PollingStopped(f"long polling stopped: {reason}")


async def _start_receiving(application: Application[Any, Any, Any, Any, Any, Any], settings: Settings) -> None:
    if settings.webhook_url:
        assert settings.webhook_secret is not None
        await application.bot.set_webhook(
            settings.webhook_url,
            secret_token=settings.webhook_secret.get_secret_value(),
            allowed_updates=ALLOWED_UPDATES,
        )
    else:
        assert application.updater is not None
        # Its default callback logs a traceback per failed call; the watched request logs them, once a minute.
        await application.updater.start_polling(allowed_updates=ALLOWED_UPDATES, error_callback=_logged_elsewhere)


def _logged_elsewhere(error: TelegramError) -> None:
    """python-telegram-bot's polling error callback: ``WatchedGetUpdatesRequest`` has noted and logged ``error``."""


def run(settings: Settings) -> None:
    """Apply migrations, load the models, and serve until stopped."""
    for name in ("bot", UPDATE_LOGGER):  # a running service reports what it does, not only what fails
        if logging.getLogger(name).getEffectiveLevel() > logging.INFO:
            logging.getLogger(name).setLevel(logging.INFO)
    # No log line may hold a secret: httpx logs each URL (token and all), and a library's error can quote it.
    with redacted_logs(settings):
        with migrate.reaching(settings.database_url):  # the first connection: an unreachable database fails here
            migrate.upgrade(settings.database_url)
        blocking = file_in_the_way(settings.model_dir)
        if blocking is not None:  # guesses work without it; every fine-tune would fail, each in its own words
            logger.warning("MODEL_DIR %s: %s is not a folder: fine-tunes will fail", settings.model_dir, blocking)
        asyncio.run(serve(settings, load_predictors(settings)))
