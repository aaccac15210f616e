"""Bot settings: what start-up refuses, by name and in one line, and the secrets no log line may show."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from telegram.error import InvalidToken, NetworkError

from bot.config import (
    DEFAULT_API_BASE_URL,
    DatabaseSettings,
    FinetuneSettings,
    Settings,
    SettingsError,
    load_settings,
)
from bot.feedback import FeedbackPolicy
from bot.finetune_job import config_from, policy_from
from bot.redaction import redacted_logs
from bot.server import startup_failure
from core.finetune import FinetuneConfig


def test_settings_parse_and_fail_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    settings = load_settings(Settings, telegram_bot_token="1:abc", bot_admin_ids=" 5, 7 ,")
    assert settings.bot_admin_ids == frozenset({5, 7})
    assert "1:abc" not in repr(settings) and "1:abc" not in str(settings.model_dump())
    with pytest.raises(SettingsError) as missing:
        load_settings(Settings)
    assert str(missing.value) == "invalid configuration: TELEGRAM_BOT_TOKEN is required"
    with pytest.raises(SettingsError, match="BOT_ADMIN_IDS .*comma-separated integer"):
        load_settings(Settings, telegram_bot_token="1:abc", bot_admin_ids="alice")
    with pytest.raises(SettingsError, match="TELEGRAM_API_BASE_URL"):
        load_settings(Settings, telegram_bot_token="1:abc", telegram_api_base_url="ftp://x")
    with pytest.raises(SettingsError, match="BOT_ADMIN_IDS must be users' ids, which are positive"):
        load_settings(Settings, telegram_bot_token="1:abc", bot_admin_ids="5,-100123")
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///x.db")
    assert load_settings(DatabaseSettings).database_url == "sqlite+aiosqlite:///x.db"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("nonsense", "DATABASE_URL is not a database URL; use e.g. sqlite+aiosqlite:///"),
        ("sqlite:///x.db", "DATABASE_URL uses the driver 'sqlite'; the bot needs one of sqlite+aiosqlite, "),
        ("postgresql://bot:hunter2@db/bot", "DATABASE_URL uses the driver 'postgresql'; the bot needs one of "),
        ("postgresql+asyncpg://bot:p@ss:hunter2@db/bot", "DATABASE_URL is not a database URL"),  # a bad port
        ("sqlite+aiosqlite://", "DATABASE_URL names no database file"),
        ("sqlite+aiosqlite:///:memory:", "DATABASE_URL names no database file"),
        ("sqlite+aiosqlite:///file:x?mode=memory&uri=true", "DATABASE_URL names no database file"),
        ("postgresql+asyncpg://bot:hunter2@db/bot?sslmode=require", "DATABASE_URL has sslmode=..., which asyncpg"),
        ("postgresql+asyncpg://bot:hunter2@db/bot?ssl=require&foo=1", "DATABASE_URL has the query option 'foo'"),
        ("postgresql+asyncpg://bot@db/bot?password=hunter2", "DATABASE_URL has ?password=...: put the password in"),
    ],
)
def test_a_database_url_the_bot_cannot_use_is_one_line_without_its_password(url: str, problem: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(DatabaseSettings, database_url=url)
    assert str(error.value).startswith(f"invalid configuration: {problem}")
    assert "hunter2" not in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://bot:pw@db/bot?ssl=require&command_timeout=30&prepared_statement_cache_size=0",
        "postgresql+asyncpg://bot:pw@/bot?host=/var/run/postgresql",  # a Unix socket
        "postgresql+asyncpg://bot:pw@/bot?host=db1:5432&host=db2:5432&target_session_attrs=read-write",
    ],
)
def test_asyncpg_url_options_are_accepted(url: str) -> None:
    assert load_settings(DatabaseSettings, database_url=url).database_url == url


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("model_refresh_seconds", "inf"),  # used to crash the job queue at start (timedelta overflow)
        ("model_refresh_seconds", "1e20"),
        ("model_refresh_seconds", "0.001"),  # the database asked a thousand times a second
        ("telegram_messages_per_second", "1e-300"),  # one message, then silence for ages
        ("telegram_messages_per_second", "nan"),
        ("finetune_learning_rate", "inf"),
        ("finetune_max_drop", "inf"),
        ("finetune_max_drop", "nan"),
        ("model_keep_versions", "-1"),  # kept the oldest file, pruning every newer one
    ],
)
def test_numbers_no_bot_could_run_with_are_refused_by_name(setting: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^invalid configuration: {setting.upper()} "):
        load_settings(Settings, telegram_bot_token="1:x", **{setting: value})


@pytest.mark.parametrize("setting", ["webhook_secret", "log_salt"])
def test_a_short_secret_is_refused(setting: str) -> None:
    with pytest.raises(SettingsError, match=f"{setting.upper()} must be .*16"):
        load_settings(Settings, telegram_bot_token="1:x", **{setting: "short-secret"})


@pytest.mark.parametrize("setting", ["webhook_secret", "log_salt"])
def test_the_env_example_placeholders_are_refused_as_secrets(setting: str) -> None:
    with pytest.raises(SettingsError, match=f"{setting.upper()} is still the placeholder from .env.example"):
        load_settings(Settings, telegram_bot_token="1:abc", **{setting: "replace-with-a-long-random-string"})


@pytest.mark.parametrize("token", ["garbage", "abc:def", "123456:", ":secret", "123456:with space", "123456 :x"])
def test_a_malformed_token_is_refused_without_repeating_it(token: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(Settings, telegram_bot_token=token)
    assert str(error.value) == (
        "invalid configuration: TELEGRAM_BOT_TOKEN must look like 123456789:AAH… "
        "(the bot's id, a colon, then letters, digits, _ and -)"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [("abc", "must be a valid integer, unable to parse string as an integer"),
     ("0", "must be greater than or equal to 1")],
)  # fmt: skip
def test_pydantic_s_own_checks_read_like_the_others(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(Settings, telegram_bot_token="1:abc", guesses_per_minute=value)
    assert str(error.value) == f"invalid configuration: GUESSES_PER_MINUTE {problem}"


def test_bot_api_failures_name_the_url_without_its_password_and_never_the_token() -> None:
    token = "123:Very-secret"
    settings = load_settings(
        Settings, telegram_bot_token=token, telegram_api_base_url="https://bot:hunter2@api.example/bot"
    )
    unreachable = str(startup_failure(NetworkError(f"connection to .../bot{token}/getMe failed"), settings))
    assert unreachable == (
        "cannot reach the Telegram Bot API at https://bot:***@api.example/bot: "
        "connection to .../bot<TELEGRAM_BOT_TOKEN>/getMe failed"
    )
    unreadable = settings.model_copy(update={"telegram_api_base_url": "http://bot:hunter2@[::1/bot"})  # unchecked
    assert "hunter2" not in str(startup_failure(NetworkError("boom"), unreadable))
    official = load_settings(Settings, telegram_bot_token=token, telegram_api_base_url=DEFAULT_API_BASE_URL)
    assert str(startup_failure(InvalidToken(), official)) == (
        "Telegram rejected TELEGRAM_BOT_TOKEN (mistyped or revoked? @BotFather shows the current one)"
    )


@pytest.mark.parametrize("url", ["http://[::1/bot", "https:///bot", "http://"])
def test_a_bot_api_url_without_a_readable_host_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="TELEGRAM_API_BASE_URL must be a URL with a host"):
        load_settings(Settings, telegram_bot_token="1:abc", telegram_api_base_url=url)


@pytest.mark.parametrize("url", ["https://api.telegram.org", "http://localhost:8081", "https://api.telegram.org/bot/"])
def test_a_bot_api_url_the_token_cannot_follow_is_refused(url: str) -> None:
    # Without /bot the token ran into the host or port: a request error then quoted its secret half.
    with pytest.raises(SettingsError, match="TELEGRAM_API_BASE_URL must end in /bot"):
        load_settings(Settings, telegram_bot_token="1:abc", telegram_api_base_url=url)


def test_a_bot_api_url_may_say_where_the_token_goes() -> None:
    url = "https://api.telegram.org/bot{token}/test"  # Telegram's test environment
    assert load_settings(Settings, telegram_bot_token="1:abc", telegram_api_base_url=url).telegram_api_base_url == url


def test_no_log_line_holds_a_secret_whichever_library_wrote_it() -> None:
    secret_half = "AAHsecretSECRETsecret0123456789"
    settings = load_settings(
        Settings, telegram_bot_token=f"7012345678:{secret_half}", webhook_secret="hook7-webhook-secret",
        webhook_url="https://bot.example/hook", log_salt="salty-salt-for-hashes",
    )  # fmt: skip
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root, logger, httpx_logger = logging.getLogger(), logging.getLogger("tests.redaction"), logging.getLogger("httpx")
    root.addHandler(handler)
    levels = root.level, httpx_logger.level
    root.setLevel(logging.INFO)  # as under `nameorigin -v`
    try:
        with redacted_logs(settings):
            logger.warning("request failed (%s)", f"InvalidURL(\"Invalid port: '{secret_half}'\")")
            try:
                raise NetworkError(
                    f"POST https://api.telegram.org/bot7012345678:{secret_half}/getMe with hook7-webhook-secret"
                )
            except NetworkError:
                logger.exception("could not start")
            logger.warning("stack: salty-salt-for-hashes", stack_info=True)  # the stack quotes this line
            httpx_logger.info(f"HTTP Request: POST https://api.telegram.org/bot7012345678:{secret_half}/getMe")
            logger.warning("%d names", "many")  # a malformed call must not raise out of the logging call
        logger.warning("after: %s", "hook7-webhook-secret")  # the filter is gone once the block ends
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
    logged = stream.getvalue()
    during = logged.removesuffix("after: hook7-webhook-secret\n")
    assert secret_half not in during and "hook7-webhook-secret" not in during and "salty-salt" not in during
    assert (
        "Invalid port: '<TELEGRAM_BOT_TOKEN>'" in logged
        and "bot<TELEGRAM_BOT_TOKEN>/getMe with <WEBHOOK_SECRET>" in logged
    )
    assert "Traceback" in logged and 'logger.warning("stack: <LOG_SALT>", stack_info=True)' in logged
    assert "HTTP Request" not in logged  # httpx's request lines are off meanwhile
    assert "unformattable log call: '%d names'" in logged
    assert logged.endswith("after: hook7-webhook-secret\n") and httpx_logger.level == levels[1]
    unreachable = startup_failure(NetworkError(f"Invalid port: '{secret_half}'"), settings)
    assert secret_half not in str(unreachable)


def test_settings_read_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    (tmp_path / ".env").write_text("TELEGRAM_BOT_TOKEN=9:from-dotenv\nGUESSES_PER_MINUTE=5\n")
    settings = load_settings(Settings)
    assert settings.telegram_bot_token.get_secret_value() == "9:from-dotenv"
    assert settings.guesses_per_minute == 5


@pytest.mark.parametrize("listen", ["0.0.0.0:99999", "localhost:70000", "[::1]:65536", "0.0.0.0:0", "0.0.0.0", "a b:8"])
def test_listen_addresses_need_a_real_port(listen: str) -> None:
    for setting in ("webhook_listen", "health_listen"):
        with pytest.raises(SettingsError, match=f"{setting.upper()} must be host:port with a port from 1 to 65535"):
            load_settings(Settings, telegram_bot_token="1:abc", **{setting: listen})


def test_listen_addresses_accept_hosts_and_bracketed_ipv6() -> None:
    settings = load_settings(Settings, telegram_bot_token="1:abc", webhook_listen="[::]:65535", health_listen="h:1")
    assert (settings.webhook_listen, settings.health_listen) == ("[::]:65535", "h:1")


def test_a_webhook_needs_its_secret() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(Settings, telegram_bot_token="1:abc", webhook_url="https://bot.example/hook")
    assert str(error.value) == "invalid configuration: WEBHOOK_SECRET is required with WEBHOOK_URL"


@pytest.mark.parametrize(
    ("url", "accepted"),
    [("https://bot.example/hook", True), ("http://bot.example/hook", False), ("http://203.0.113.7:8443/hook", False),
     ("http://127.0.0.1.bot.example/hook", False), ("ftp://127.0.0.1/hook", False),
     ("http://127.0.0.1:8443/hook", True), ("http://localhost/hook", True), ("http://[::1]:8443/hook", True)],
)  # fmt: skip
def test_a_plain_http_webhook_is_accepted_only_on_loopback(url: str, accepted: bool) -> None:
    values = {"telegram_bot_token": "1:abc", "webhook_url": url, "webhook_secret": "hook7-webhook-secret"}
    if accepted:
        assert load_settings(Settings, **values).webhook_path == "/hook"
    else:
        with pytest.raises(SettingsError, match=r"^invalid configuration: WEBHOOK_URL must start with https://"):
            load_settings(Settings, **values)


@pytest.mark.parametrize("ids", ["0", "5,0"])
def test_user_id_zero_cannot_be_an_admin(ids: str) -> None:
    with pytest.raises(SettingsError, match="BOT_ADMIN_IDS must be users' ids, which are positive"):
        load_settings(Settings, telegram_bot_token="1:abc", bot_admin_ids=ids)


def test_the_settings_defaults_are_the_librarys_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Written twice (pydantic fields for the bot, dataclass fields for the library): nothing else keeps them in step.
    monkeypatch.chdir(tmp_path)  # no stray .env (the one `docker run --env-file .env` reads, say)
    for name in FinetuneSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    settings = load_settings(FinetuneSettings)
    assert config_from(settings) == FinetuneConfig()
    assert policy_from(settings) == FeedbackPolicy()
    assert settings.model_keep_versions == 10  # as README's table says


def test_every_setting_is_in_the_readme_table_and_in_env_example() -> None:
    root = Path(__file__).resolve().parents[2]
    readme, example = (root / "README.md").read_text(), (root / ".env.example").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    for name in (name.upper() for name in Settings.model_fields):
        assert any(f"`{name}`" in row.split(" | ")[0] for row in rows), f"{name} has no row in the README's table"
        assert f"\n# {name}=" in example or f"\n{name}=" in example or example.startswith(f"{name}="), name
