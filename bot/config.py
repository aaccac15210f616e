"""Bot settings from the environment (and ``.env``), validated once at start-up."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.cron import crontab_trigger
from core.choices import Prior
from core.data import DEFAULT_DATA_DIR
from core.paths import DEFAULT_MODEL_DIR

DEFAULT_API_BASE_URL = "https://api.telegram.org/bot"
TOKEN_MARKS = ("{token}", "{TOKEN}", "{bot_token}", "{BOT_TOKEN}", "{bot-token}", "{BOT-TOKEN}")  # as PTB reads them
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PLACEHOLDER_MARK = "replace-with-"  # how .env.example marks the values a person must fill in
MIN_MESSAGES_PER_SECOND = 1 / 60
MIN_SECRET_CHARS = 16  # WEBHOOK_SECRET and LOG_SALT
# The async drivers the project installs; any other needs a package it does not have, or is not async.
ASYNC_DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
EXAMPLE_DATABASE_URLS = "sqlite+aiosqlite:///data/nameorigin.db or postgresql+asyncpg://user:password@host/db"
# Query options a postgresql+asyncpg URL may carry: asyncpg.connect's keywords, and SQLAlchemy's own. Any other
# reaches asyncpg.connect and fails there with a TypeError, at the first connection.
ASYNCPG_URL_OPTIONS = frozenset({
    "host", "port", "user", "database",  # ?host=/var/run/postgresql: a Unix socket, or several hosts
    "ssl", "direct_tls", "timeout", "command_timeout", "statement_cache_size", "max_cached_statement_lifetime",
    "max_cacheable_statement_size", "target_session_attrs", "passfile", "service", "servicefile", "krbsrvname",
    "gsslib", "server_settings", "prepared_statement_cache_size",
})  # fmt: skip


class SettingsError(Exception):
    """A missing or malformed setting; the message is one line naming it."""


class DatabaseSettings(BaseSettings):
    """What ``nameorigin db`` needs: only the database. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    database_url: str = Field("sqlite+aiosqlite:///data/nameorigin.db", description="SQLAlchemy async URL")

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        # Checked here, not at the first connection: a wrong URL would otherwise surface as a traceback
        # from deep inside SQLAlchemy. The message never repeats the URL, which may hold a password.
        try:
            driver = make_url(value).drivername
        except (ArgumentError, ValueError):  # ValueError: a bad port, whose message would quote the URL
            raise ValueError(f"is not a database URL; use e.g. {EXAMPLE_DATABASE_URLS}") from None
        if driver not in ASYNC_DATABASE_DRIVERS:
            raise ValueError(
                f"uses the driver {driver!r}; the bot needs one of {', '.join(ASYNC_DATABASE_DRIVERS)}, "
                f"e.g. {EXAMPLE_DATABASE_URLS}"
            )
        url = make_url(value)
        if driver == "sqlite+aiosqlite" and (
            url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
        ):  # each connection would get its own empty database: the migrations', the bot's, the fine-tune's
            raise ValueError("names no database file; use e.g. sqlite+aiosqlite:///data/nameorigin.db")
        if driver == "postgresql+asyncpg":
            if "sslmode" in url.query:  # libpq's name, in most hosting providers' URLs
                raise ValueError(
                    "has sslmode=..., which asyncpg does not take: write ssl=... instead (e.g. ssl=require)"
                )
            if "password" in url.query:  # messages hide user:password@, not the query
                raise ValueError("has ?password=...: put the password in user:password@host, where it stays hidden")
            unknown = sorted(set(url.query) - ASYNCPG_URL_OPTIONS)
            if unknown:
                raise ValueError(f"has the query option {unknown[0]!r}, which asyncpg does not take")
        return value


class FinetuneSettings(DatabaseSettings):
    """What a fine-tune run needs (``nameorigin finetune`` and the bot's scheduled job): no Telegram token."""

    bot_admin_ids: Annotated[frozenset[int], NoDecode] = Field(frozenset(), description="comma-separated user ids")
    names_data_dir: Path = Field(DEFAULT_DATA_DIR, description="the 18 language files (replay and the test gate)")
    model_dir: Path = Field(DEFAULT_MODEL_DIR, description="trained and promoted checkpoints")
    finetune_min_new: int = Field(20, ge=1, description="usable verdicts since the last run before a scheduled run")
    feedback_min_agreement: int = Field(2, ge=1, description="distinct users who must agree on a surname's language")
    feedback_user_daily_cap: int = Field(50, ge=1, description="verdicts per user per day that count")
    finetune_max_drop: float = Field(
        0.5, ge=0.0, le=100.0, description="largest test-accuracy drop (points) still promoted"
    )
    finetune_epochs: int = Field(4, ge=1, description="epochs per fine-tune run")
    finetune_learning_rate: float = Field(1e-3, gt=0.0, le=1.0, description="peak learning rate of a fine-tune run")
    finetune_feedback_weight: int = Field(5, ge=1, description="times each trusted verdict is seen per epoch")
    finetune_replay: int = Field(4000, ge=0, description="original training names mixed into each run")
    finetune_threads: int = Field(1, ge=1, description="CPU threads the fine-tune process may use")
    model_keep_versions: int = Field(
        10,
        ge=0,
        description="promoted fine-tunes whose checkpoints are kept (besides the live one and its parent); "
        "older ones are deleted, and can no longer be rolled back to; 0 keeps all",
    )
    # Here rather than only in Settings: the promotion gate judges the answers users see, under this prior.
    prediction_prior: Prior = Field(
        "dataset",
        description="how common each language is taken to be before reading a name: 'dataset' keeps the training "
        "data's proportions (about half Russian), 'uniform' makes all 18 equal (better for names from elsewhere)",
    )

    @field_validator("names_data_dir", "model_dir", mode="before")
    @classmethod
    def _blank_means_default(cls, value: object, info: ValidationInfo) -> object:
        # NAMES_DATA_DIR= is a setting left blank, as `nameorigin eval` reads it, not "." (the working folder).
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[info.field_name].default if info.field_name else value
        return value

    @field_validator("bot_admin_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            try:
                ids = frozenset(int(part) for part in parts)
            except ValueError as exc:
                raise ValueError("must be comma-separated integer user ids") from exc
            if any(user_id <= 0 for user_id in ids):  # Telegram's user ids are positive; groups' are negative
                raise ValueError("must be users' ids, which are positive (a group's id cannot be an admin)")
            return ids
        return value

    def environment(self) -> dict[str, str]:
        """These settings as environment variables, to hand to a fine-tune child process."""
        variables = {}
        for name in FinetuneSettings.model_fields:
            value = getattr(self, name)
            text = ",".join(str(item) for item in sorted(value)) if isinstance(value, frozenset) else str(value)
            variables[name.upper()] = text
        return variables


class Settings(FinetuneSettings):
    """Every knob of the bot."""

    telegram_bot_token: SecretStr = Field(description="token from @BotFather")
    telegram_api_base_url: str = Field(DEFAULT_API_BASE_URL, description="Bot API base URL (self-hosted or tests)")
    guesses_per_minute: int = Field(20, ge=1, description="per-user incoming limit (each name of a list counts)")
    button_presses_per_minute: int = Field(
        60, ge=1, description="per-user limit on inline-button presses, each a database write"
    )
    telegram_messages_per_second: float = Field(
        30.0, ge=0.0, le=1000.0, description="outgoing limit for the whole bot (Telegram's default); 0 disables it"
    )
    uncertain_below: float = Field(0.5, ge=0.0, le=1.0, description="flag answers below this probability")
    finetune_cron: str = Field("0 3 * * *", description="crontab schedule (UTC) of fine-tune runs; empty disables")
    guess_retention_days: int = Field(
        0,
        ge=0,
        le=36_500,  # further back than year 1 the cutoff cannot be computed: the hourly job would fail each time
        description="days a guess no one gave a verdict on is kept (checked hourly); 0 keeps them all",
    )
    model_refresh_seconds: float = Field(
        30.0, ge=1.0, le=86_400.0, description="how often the bot checks the database for a newly live model"
    )

    webhook_url: str = Field("", description="public HTTPS URL Telegram posts updates to; empty: long polling")
    webhook_secret: SecretStr | None = Field(None, description="checked on every webhook request")
    webhook_listen: str = Field("0.0.0.0:8080", description="host:port the webhook server binds (behind TLS)")
    health_listen: str = Field("", description="host:port for GET /health in polling mode; empty: none")
    log_salt: SecretStr | None = Field(None, description="key for hashing user ids in logs (default: from the token)")

    @field_validator("telegram_messages_per_second")
    @classmethod
    def _a_usable_rate(cls, value: float) -> float:
        # Below one message a minute, the first reply would hold back every other for minutes or ages.
        if 0 < value < MIN_MESSAGES_PER_SECOND:
            raise ValueError("must be 0 (no limit) or at least one message a minute (0.0167)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_format(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram takes 1-256 characters; under 16 a secret is guessable, and hiding it in logs would garble them.
        if value is not None and not re.fullmatch(
            rf"[A-Za-z0-9_-]{{{MIN_SECRET_CHARS},256}}", value.get_secret_value()
        ):
            raise ValueError("must be 16-256 characters of A-Z, a-z, 0-9, _ and - (Telegram allows those characters)")
        return value

    @field_validator("log_salt")
    @classmethod
    def _salt_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters: a short key is guessed from the hashes")
        return value

    @field_validator("webhook_secret", "log_salt")
    @classmethod
    def _not_the_example(cls, value: SecretStr | None) -> SecretStr | None:
        # .env.example's text is public: as a secret or a salt it would protect nothing.
        if value is not None and PLACEHOLDER_MARK in value.get_secret_value():
            raise ValueError("is still the placeholder from .env.example: put in a long random string of your own")
        return value

    @field_validator("webhook_listen", "health_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        match = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[^:\s\[\]]+):(\d{1,5})", value)
        if value and (match is None or not 1 <= int(match[2]) <= 65535):
            raise ValueError("must be host:port with a port from 1 to 65535, e.g. 0.0.0.0:8080")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        if self.webhook_url:
            parts = urlsplit(self.webhook_url)
            # Telegram only posts to HTTPS; plain HTTP is allowed on loopback, for a local Bot API server and tests.
            if not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)):
                raise ValueError("WEBHOOK_URL must start with https:// (http:// only on 127.0.0.1 or localhost)")
            if self.webhook_secret is None:
                raise ValueError("WEBHOOK_SECRET is required with WEBHOOK_URL")
            if not self.webhook_listen:
                raise ValueError("WEBHOOK_LISTEN must not be empty with WEBHOOK_URL")
        return self

    @property
    def webhook_path(self) -> str:
        """The path part of ``WEBHOOK_URL``: where the webhook server listens."""
        return urlsplit(self.webhook_url).path or "/"

    @field_validator("finetune_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if value.strip():
            crontab_trigger(value.strip(), UTC)  # raises ValueError naming the bad field
        return value.strip()

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        if PLACEHOLDER_MARK in value.get_secret_value():  # .env.example copied, token not filled in
            raise ValueError("is still the placeholder from .env.example: put in the token @BotFather gave you")
        # Checked here rather than by Telegram at start, where a mistake would cost a round trip or three.
        if not re.fullmatch(r"[0-9]+:[A-Za-z0-9_-]+", value.get_secret_value()):
            raise ValueError("must look like 123456789:AAH… (the bot's id, a colon, then letters, digits, _ and -)")
        return value

    @field_validator("telegram_api_base_url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        try:
            host = urlsplit(value).hostname
        except ValueError:  # e.g. an unclosed "[" of an IPv6 address
            host = None
        if not host:
            raise ValueError("must be a URL with a host, e.g. https://api.telegram.org/bot")
        # python-telegram-bot appends the token to the URL, or puts it where the URL says {token}.
        if not value.endswith("/bot") and not any(mark in value for mark in TOKEN_MARKS):
            raise ValueError(
                "must end in /bot, where the token is appended (e.g. https://api.telegram.org/bot or "
                "http://localhost:8081/bot), or hold {token} where it goes"
            )
        return value


SettingsT = TypeVar("SettingsT", bound=DatabaseSettings)


def load_settings(kind: type[SettingsT], **overrides: Any) -> SettingsT:
    """Read settings of class ``kind``; raise ``SettingsError`` naming every problem on one line."""
    try:
        return kind(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = "is required" if error["type"] == "missing" else error["msg"].removeprefix("Value error, ")
            # pydantic's own checks say "Input should be ...": worded like ours, "X must be ...".
            message = message.replace("Input should be", "must be", 1)
            # A check across fields has no location; its message names the settings itself.
            problems.append(f"{str(error['loc'][0]).upper()} {message}" if error["loc"] else message)
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
