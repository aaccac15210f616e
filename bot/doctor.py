"""``nameorigin doctor``: check the configuration, Telegram, database, model and dataset; say what is missing."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from telegram import Bot
from telegram.error import TelegramError
from telegram.request import HTTPXRequest

from bot import model_comparison, model_store
from bot.config import FinetuneSettings, Settings, SettingsError, load_settings
from bot.db import migrate
from bot.db.engine import create_engine, first_line, session_factory
from bot.db.repository import sqlite_damage
from bot.db.versions import active_version
from bot.redaction import redacted_logs
from bot.server import startup_failure
from core.checkpoint import CheckpointError, CheckpointMetadata, load_checkpoint
from core.data import DatasetError, load_dataset
from core.paths import unwritable_reason

TELEGRAM_TIMEOUT_S = 10.0
# What SQLite answers when a page it reads is not what the file format says: the file is damaged.
SQLITE_DAMAGE = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


class Status(Enum):
    """How a check came out."""

    OK = "✓"
    WARNING = "!"  # works, but something is off or limited
    PROBLEM = "✗"  # the bot, or a part of it, will not work


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    status: Status
    topic: str
    detail: str

    def __str__(self) -> str:
        return f"{self.status.value} {self.topic}: {self.detail}"


def _settings() -> tuple[FinetuneSettings | None, Finding]:
    """The settings the other checks can use (None when even those are invalid), and how the configuration fared."""
    try:
        settings: FinetuneSettings = load_settings(Settings)
        return settings, Finding(Status.OK, "configuration", "all settings valid")
    except SettingsError as exc:
        finding = Finding(Status.PROBLEM, "configuration", str(exc).removeprefix("invalid configuration: "))
    # Without a valid bot configuration (say, no token) the rest can still be checked with what is there.
    try:
        return load_settings(FinetuneSettings), finding
    except SettingsError:  # its problems are among those the finding already names
        return None, finding


async def _database(url: str) -> tuple[Finding, str | None]:
    """The database's state, and the stored checkpoint path of its live model if it has one."""
    missing = migrate.missing_sqlite_file(url)
    if missing is not None:
        return Finding(Status.OK, "database", f"{missing} will be created at the first start"), None
    head = migrate.head_revision()
    try:
        revision = await asyncio.to_thread(migrate.current_revision, url)
    except Exception as exc:  # any driver's connection error
        safe = make_url(url).render_as_string(hide_password=True)
        # One line: SQLAlchemy adds a "(Background on this error at: …)" line to its messages.
        return Finding(
            Status.PROBLEM, "database", f"cannot connect to {safe}: {type(exc).__name__}: {first_line(exc)}"
        ), None
    if not migrate.is_known_revision(revision):
        detail = f"at revision {revision}, which this nameorigin does not know: a newer version migrated it"
        return Finding(Status.PROBLEM, "database", detail), None
    if revision != head:
        detail = f"at revision {revision or 'none'}, the code expects {head}: `serve` migrates at start"
        return Finding(Status.WARNING, "database", detail), None
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            damage = await sqlite_damage(session=session)
            live = await active_version(session=session) if damage is None else None
    except DBAPIError as exc:
        reason = f"{type(exc.orig).__name__}: {first_line(exc.orig)}"
        if getattr(exc.orig, "sqlite_errorname", None) not in SQLITE_DAMAGE:  # locked, a lost connection, no table
            return Finding(Status.PROBLEM, "database", f"cannot read it: {reason}"), None
        damage = reason  # a page the query needed is unreadable
    finally:
        await engine.dispose()
    if damage is not None:
        detail = f"the file is damaged ({damage}): restore the latest backup (see Backups in the README)"
        return Finding(Status.PROBLEM, "database", detail), None
    return Finding(Status.OK, "database", f"reachable, schema at {head}"), live.checkpoint_path if live else None


def _servable(path: Path, settings: FinetuneSettings) -> CheckpointMetadata | str:
    """The metadata of the GRU at ``path``, or why `serve` would refuse it."""
    try:
        metadata = load_checkpoint(path).metadata
        if isinstance(settings, Settings):
            metadata.logit_shift(settings.prediction_prior)  # `serve` refuses a model that cannot apply it
    except CheckpointError as exc:
        return str(exc)
    return model_store.unservable(metadata, path) or metadata


def _described(metadata: CheckpointMetadata, stored: str) -> str:
    accuracy = model_comparison.recorded_test_accuracy(metadata)
    figures = f", test accuracy {accuracy:.2%}" if accuracy is not None else ""
    return f"{metadata.version} loads from {stored}{figures}"


def _model(settings: FinetuneSettings, stored: str | None) -> Finding:
    # `serve` starts with MODEL_DIR/gru.safetensors when it is there, before it syncs to the live version, and
    # adopts it as live only if it is not far worse (model_comparison.adoption_refusal): the shipped GRU is the one
    # to beat while no version is live.
    trained_path = settings.model_dir / model_store.TRAINED_GRU
    trained = _servable(trained_path, settings) if os.path.lexists(trained_path) else None
    if isinstance(trained, str):
        return Finding(Status.PROBLEM, "model", f"{trained} (`serve` refuses to start until it is replaced or removed)")
    first_start = stored is None
    stored = stored or model_store.SHIPPED_GRU
    live = _servable(model_store.resolve(settings.model_dir, stored), settings)
    if isinstance(live, str):
        return Finding(Status.PROBLEM, "model", live)
    if trained is None or trained.version == live.version:
        return Finding(Status.OK, "model", _described(live, stored))
    refusal = model_comparison.adoption_refusal(trained, live, settings.finetune_max_drop)
    if refusal is not None:
        detail = f"{_described(live, stored)}; {trained.version} in {trained_path} stays out: {refusal}"
        return Finding(Status.WARNING, "model", detail)
    if first_start:  # adopted at start, in the shipped model's place
        return Finding(Status.OK, "model", _described(trained, model_store.TRAINED_GRU))
    return Finding(Status.OK, "model", _described(live, stored))


def _model_dir(settings: FinetuneSettings) -> Finding:
    reason = unwritable_reason(settings.model_dir)
    if reason is not None:
        return Finding(
            Status.PROBLEM, "model folder", f"MODEL_DIR {settings.model_dir}: {reason} (fine-tuning writes there)"
        )
    state = "is writable" if settings.model_dir.is_dir() else "will be created by the first fine-tune"
    return Finding(Status.OK, "model folder", f"{settings.model_dir} {state}")


def _dataset(settings: FinetuneSettings) -> Finding:
    try:
        dataset = load_dataset(settings.names_data_dir)
    except DatasetError as exc:
        # Scheduled runs would fail every night; without a schedule only /retrain would.
        scheduled = not isinstance(settings, Settings) or bool(settings.finetune_cron)
        status = Status.PROBLEM if scheduled else Status.WARNING
        return Finding(status, "dataset", f"{exc} (fine-tuning needs it; guessing does not)")
    return Finding(Status.OK, "dataset", f"{len(dataset.examples)} names in {settings.names_data_dir}")


async def _telegram(settings: FinetuneSettings) -> Finding | None:
    """Whether the Bot API accepts the token: the one setting no local check can confirm."""
    if not isinstance(settings, Settings):
        return None  # no valid token to try
    request = HTTPXRequest(connect_timeout=TELEGRAM_TIMEOUT_S, read_timeout=TELEGRAM_TIMEOUT_S)
    bot = Bot(settings.telegram_bot_token.get_secret_value(), base_url=settings.telegram_api_base_url, request=request)
    library = logging.getLogger("telegram")
    level = library.level
    # Its request layer logs a traceback before raising the error this finding reports in one line.
    library.setLevel(logging.CRITICAL)
    try:
        with redacted_logs(settings):  # under `nameorigin -v` httpx would log the URL, token and all
            async with bot:  # initialize() asks getMe
                return Finding(Status.OK, "telegram", f"the token belongs to @{bot.username}")
    except TelegramError as exc:  # the same words `serve` would stop with, never the token
        return Finding(Status.PROBLEM, "telegram", str(startup_failure(exc, settings)))
    finally:
        library.setLevel(level)


def _admins(settings: FinetuneSettings) -> Finding:
    if not settings.bot_admin_ids:
        return Finding(Status.WARNING, "admins", "BOT_ADMIN_IDS is empty: nobody can use /retrain, /models, /rollback")
    return Finding(Status.OK, "admins", f"{len(settings.bot_admin_ids)} admin id(s)")


def _mode(settings: FinetuneSettings) -> Finding | None:
    if not isinstance(settings, Settings):
        return None  # the bot's own settings did not load: which mode it would run in is unknown
    if not settings.webhook_url:
        return Finding(Status.OK, "mode", "long polling")
    if not settings.webhook_url.startswith("https://"):
        return Finding(Status.WARNING, "mode", f"WEBHOOK_URL {settings.webhook_url} is not HTTPS: Telegram needs HTTPS")
    return Finding(Status.OK, "mode", f"webhooks at {settings.webhook_url}, listening on {settings.webhook_listen}")


async def diagnose() -> list[Finding]:
    """Every check, in the order a person would fix them."""
    settings, configuration = _settings()
    if settings is None:
        # Checking the database, model or dataset against defaults would report on places the bot will not use.
        skipped = Finding(Status.PROBLEM, "other checks", "skipped until the configuration above is valid")
        return [configuration, skipped]
    database, live_path = await _database(settings.database_url)
    findings = [
        configuration,
        await _telegram(settings),
        _mode(settings),
        database,
        _model(settings, live_path),
        _model_dir(settings),
        _dataset(settings),
        _admins(settings),
    ]
    return [finding for finding in findings if finding is not None]
