"""Bot settings from the environment (and ``.env``), validated once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_API_BASE_URL = "https://api.telegram.org/bot"


class SettingsError(Exception):
    """A missing or malformed setting; the message is one line naming it."""


class DatabaseSettings(BaseSettings):
    """What ``nameorigin db`` needs: only the database. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    database_url: str = Field("sqlite+aiosqlite:///data/nameorigin.db", description="SQLAlchemy async URL")


class Settings(DatabaseSettings):
    """Every knob of the bot."""

    telegram_bot_token: SecretStr = Field(description="token from @BotFather")
    telegram_api_base_url: str = Field(DEFAULT_API_BASE_URL, description="Bot API base URL (self-hosted or tests)")
    bot_admin_ids: Annotated[frozenset[int], NoDecode] = Field(frozenset(), description="comma-separated user ids")
    names_data_dir: Path = Field(Path("data/names"), description="the 18 language files (fine-tuning)")
    model_dir: Path = Field(Path("data/models"), description="trained and promoted checkpoints")
    guesses_per_minute: int = Field(20, ge=1, description="per-user incoming limit")
    telegram_messages_per_second: float = Field(
        30.0, ge=0.0, description="outgoing limit for the whole bot (Telegram's default); 0 disables it"
    )
    uncertain_below: float = Field(0.5, ge=0.0, le=1.0, description="flag answers below this probability")

    @field_validator("bot_admin_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            try:
                return frozenset(int(part) for part in parts)
            except ValueError as exc:
                raise ValueError("must be comma-separated integer user ids") from exc
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("telegram_api_base_url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


SettingsT = TypeVar("SettingsT", bound=DatabaseSettings)


def load_settings(kind: type[SettingsT], **overrides: Any) -> SettingsT:
    """Read settings of class ``kind``; raise ``SettingsError`` naming every problem on one line."""
    try:
        return kind(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            message = "is required" if error["type"] == "missing" else error["msg"]
            problems.append(f"{name} {message}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
