"""One structured log line per update: who (hashed), what, how long, which model answered."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from telegram import Update
from telegram.ext import Application, CommandHandler, Job

from bot.backlog import UpdateBacklog

UPDATE_LOGGER = "nameorigin.updates"
logger = logging.getLogger(UPDATE_LOGGER)


def user_hasher(key: bytes) -> Callable[[int], str]:
    """A keyed hash of user ids: stable within one bot, not reversible by trying every id."""

    def digest(user_id: int) -> str:
        return hmac.new(key, str(user_id).encode(), hashlib.sha256).hexdigest()[:16]

    return digest


def describe(update: object, commands: frozenset[str], bot_username: str | None = None) -> dict[str, Any]:
    """The kind of update and, for one of the bot's ``commands``, which (never other text a user sent).

    Only what the bot answers counts as a command: a new message, addressed to no bot or to this one
    (``/guess@OtherBot`` is another bot's). Edits and other updates are ``"other"``.
    """
    if not isinstance(update, Update):
        return {"kind": type(update).__name__}
    if update.callback_query is not None:
        return {"kind": "button"}
    message = update.message
    if message is None:
        return {"kind": "other"}
    if message.text and message.text.startswith("/"):
        command, _, addressee = message.text.split(maxsplit=1)[0].removeprefix("/").lower().partition("@")
        if command in commands and (not addressee or addressee == (bot_username or "").lower()):
            return {"kind": "command", "command": f"/{command}"}
    return {"kind": "message"}


class LoggingApplication(Application):  # type: ignore[type-arg]
    """An ``Application`` that logs a JSON line after every update it processes.

    Built with ``ApplicationBuilder().application_class(LoggingApplication, kwargs={...})``.
    """

    def __init__(
        self,
        *,
        hash_user: Callable[[int], str],
        model_version: Callable[[], str],
        backlog: UpdateBacklog | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._hash_user = hash_user
        self._model_version = model_version
        self._backlog = backlog  # counts the tasks of updates, for long polling to wait on
        self._failed: set[int] = set()  # ids of updates whose handler raised (PTB hands those to error handlers)
        self._commands: frozenset[str] | None = None

    def mark_failed(self, update: object) -> None:
        """Called by the error handler: the update's log line will say ``"outcome": "error"``."""
        self._failed.add(id(update))

    def create_task(
        self, coroutine: Any, update: object | None = None, *, name: str | None = None
    ) -> asyncio.Task[Any]:
        """As the library's, counting each update's task in the backlog long polling waits on."""
        task: asyncio.Task[Any] = super().create_task(coroutine, update=update, name=name)
        if update is not None and self._backlog is not None:
            self._backlog.track(task)
        return task

    def _mark_for_persistence_update(self, *, update: object | None = None, job: Job[Any] | None = None) -> None:
        # python-telegram-bot notes the chat and user of every update (and job) for its persistence to save at the
        # next flush; with no persistence nothing ever flushes, and its two sets would keep every chat and user the
        # bot has heard from since it started.
        if self.persistence is not None:
            super()._mark_for_persistence_update(update=update, job=job)

    def _command_names(self) -> frozenset[str]:
        if self._commands is None:  # the handlers are added after construction; read them once, at first use
            names = {
                command
                for group in self.handlers.values()
                for handler in group
                if isinstance(handler, CommandHandler)
                for command in handler.commands
            }
            self._commands = frozenset(names)
        return self._commands

    def _bot_username(self) -> str | None:
        try:
            username: str | None = self.bot.username
        except RuntimeError:  # not initialized (no getMe yet): only in tests that feed updates directly
            return None
        return username

    async def process_update(self, update: object) -> None:
        """Process ``update`` as usual, then log its latency and the live model version."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            await super().process_update(update)
        except Exception:
            outcome = "error"
            raise
        finally:
            if id(update) in self._failed:
                self._failed.discard(id(update))
                outcome = "error"
            described = describe(update, self._command_names(), self._bot_username())
            record: dict[str, Any] = {"event": "update", **described}
            if isinstance(update, Update):
                record["update_id"] = update.update_id
                if update.effective_user is not None:
                    record["user"] = self._hash_user(update.effective_user.id)
            record["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
            record["model_version"] = self._model_version()
            record["outcome"] = outcome
            logger.info(json.dumps(record, sort_keys=True))
