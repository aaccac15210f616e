"""Small pieces of the bot: callback payloads, settings, rate limiting, message rendering."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
from pathlib import Path

import pytest
from telegram.error import BadRequest, InvalidToken, NetworkError

from bot.admin_views import run_report
from bot.callback_data import MAX_GUESS_ID, Action, ButtonPayload, MalformedCallback, decode
from bot.config import DEFAULT_API_BASE_URL, DatabaseSettings, Settings, SettingsError, load_settings
from bot.db.repository import Stats
from bot.finetune_job import RunReport
from bot.finetune_runner import child_command, child_environment, failure_reason
from bot.handlers import answer
from bot.outgoing import outgoing_limiter
from bot.ratelimit import FORGET_IDLE_ABOVE, UserRateLimiter
from bot.redaction import redacted_logs
from bot.server import startup_failure
from bot.service import VerdictRecorded
from bot.views import bar, guess_text, recorded_text, stats_text
from core.cli import main
from core.data import LANGUAGES
from core.gate import GateScores, decide
from core.predict import Guess, LanguageGuess
from core.text import parse_query


@pytest.mark.parametrize("language", LANGUAGES)
def test_payload_round_trip_fits_telegram(language: str) -> None:
    payload = ButtonPayload(Action.VERDICT, MAX_GUESS_ID, language)
    encoded = payload.encode()
    assert len(encoded.encode()) <= 64
    assert decode(encoded) == payload


@pytest.mark.parametrize(
    "data",
    [None, "", "v:1:18", "v:0:1", "v:-1:1", "v:1", "o:1:2", "b:1:2", "q:1", "v:1:1:1", "v:1:1 ", "v:1:x" * 30,
     f"v:{MAX_GUESS_ID + 1}:3", "o:99999999999", "b:10000000000000000000"],
)  # fmt: skip
def test_malformed_payloads_are_rejected(data: str | None) -> None:
    with pytest.raises(MalformedCallback):
        decode(data)


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


def test_stats_count_one_user_in_the_singular() -> None:
    assert "Guesses: 1 from 1 user\n" in stats_text(Stats(guesses=1, corrections=0, confirmed=0, users=1), "gru-a")
    assert "Guesses: 5 from 2 users\n" in stats_text(Stats(guesses=5, corrections=0, confirmed=0, users=2), "gru-a")


def test_finetune_may_lower_its_priority_but_not_raise_it(capsys: pytest.CaptureFixture[str]) -> None:
    for refused in ("-5", "20"):
        with pytest.raises(SystemExit) as exited:
            main(["finetune", "--nice", refused])
        assert exited.value.code == 2
        assert f"argument --nice: must be between 0 and 19, got {int(refused)}" in capsys.readouterr().err


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


async def test_a_press_answered_too_late_is_only_logged_and_other_refusals_still_raise() -> None:
    class Query:
        def __init__(self, refusal: str) -> None:
            self.refusal = refusal

        async def answer(self, text: str | None = None, show_alert: bool = False) -> None:
            raise BadRequest(self.refusal)

    # Telegram's own words, as PTB receives them; PTB rewrites them ("Query is too old ...").
    for late in ("Bad Request: query is too old and response timeout expired", "Bad Request: query ID is invalid"):
        await answer(Query(late))  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        await answer(Query("Bad Request: message text is empty"))  # type: ignore[arg-type]


def test_settings_read_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    (tmp_path / ".env").write_text("TELEGRAM_BOT_TOKEN=9:from-dotenv\nGUESSES_PER_MINUTE=5\n")
    settings = load_settings(Settings)
    assert settings.telegram_bot_token.get_secret_value() == "9:from-dotenv"
    assert settings.guesses_per_minute == 5


def test_rate_limiter_slides() -> None:
    now = [0.0]
    limiter = UserRateLimiter(limit=2, window=60.0, clock=lambda: now[0])
    assert limiter.allow(1) and limiter.allow(1) and not limiter.allow(1)
    assert limiter.allow(2)
    now[0] = 59.9
    assert not limiter.allow(1)
    now[0] = 60.0
    assert limiter.allow(1)


def test_rate_limiter_forgets_idle_users_at_most_once_a_window() -> None:
    now = [0.0]
    limiter = UserRateLimiter(limit=5, window=60.0, clock=lambda: now[0])
    scans: list[int] = []
    forget = limiter._forget_idle
    limiter._forget_idle = lambda at: (scans.append(len(limiter._events)), forget(at))[1]  # type: ignore[method-assign]
    for user in range(FORGET_IDLE_ABOVE + 2_000):  # all active in one window: a sweep frees nobody
        now[0] = user * 1e-3
        assert limiter.allow(user)
    assert scans == [FORGET_IDLE_ABOVE + 1]  # one scan, not one per message beyond the threshold
    now[0] = 200.0  # everyone has been idle for a whole window
    assert limiter.allow(-1)
    assert len(scans) == 2 and len(limiter._events) == 1


def test_views_escape_user_text_and_replace_notes() -> None:
    query = parse_query("Jean <b>O'Neil&Co</b>")
    result = Guess(query, (LanguageGuess("Irish", 0.42), LanguageGuess("English", 0.40)), uncertain=True)
    html = guess_text(result)
    assert "<b>bO'NeilCob</b>" in html  # the surname used: letters and apostrophes only
    assert "“Jean &lt;b&gt;O'Neil&amp;Co&lt;/b&gt;”" in html  # the raw input, escaped
    assert "Uncertain" in html
    top = ("Irish", "English")
    first = recorded_text(html, VerdictRecorded(query.surname, "Irish", confirmed=True, top_languages=top))
    second = recorded_text(first, VerdictRecorded(query.surname, "Scottish", confirmed=False, top_languages=top))
    assert "✅ Recorded" not in second and second.count("Recorded") == 1 and "Scottish" in second
    assert bar(0.0) == "░" * 10 and bar(1.0) == "█" * 10 and bar(0.46) == "█████░░░░░"


@pytest.mark.parametrize("rate", [0.25, 0.5, 1.0, 2.5, 30.0, 0.0])
async def test_the_outgoing_limit_sends_at_every_allowed_rate(rate: float) -> None:
    """Below one message a second the limiter used to refuse every request: the bot went silent."""
    settings = load_settings(Settings, telegram_bot_token="1:x", telegram_messages_per_second=rate)
    limiter = outgoing_limiter(settings.telegram_messages_per_second)
    await limiter.initialize()
    sent = []

    async def send(*_: object, **__: object) -> bool:
        sent.append(True)
        return True

    request = limiter.process_request(send, (), {}, "sendMessage", {"chat_id": 1}, None)
    assert await asyncio.wait_for(request, timeout=5) is True
    assert sent == [True]
    await limiter.shutdown()


@pytest.mark.parametrize("listen", ["0.0.0.0:99999", "localhost:70000", "[::1]:65536", "0.0.0.0:0", "0.0.0.0", "a b:8"])
def test_listen_addresses_need_a_real_port(listen: str) -> None:
    for setting in ("webhook_listen", "health_listen"):
        with pytest.raises(SettingsError, match=f"{setting.upper()} must be host:port with a port from 1 to 65535"):
            load_settings(Settings, telegram_bot_token="1:abc", **{setting: listen})


def test_listen_addresses_accept_hosts_and_bracketed_ipv6() -> None:
    settings = load_settings(Settings, telegram_bot_token="1:abc", webhook_listen="[::]:65535", health_listen="h:1")
    assert (settings.webhook_listen, settings.health_listen) == ("[::]:65535", "h:1")


def test_fine_tune_reports_name_a_prior_other_than_the_dataset_s() -> None:
    def report(prior: str | None) -> str:
        scores = {"test_accuracy": 0.7806, "test_macro_f1": 0.532, "feedback_accuracy": None}
        live, candidate = ({**scores, "prior": prior} if prior else dict(scores) for _ in range(2))
        candidate["test_accuracy"] = 0.781
        return run_report(RunReport("promoted", "ok", "gru-a", "gru-b", live, candidate, {"holdout": 0}, 1.0))

    assert "Test accuracy (uniform prior): 78.06% → 78.10% (+0.04 pts)" in report("uniform")
    assert "Test accuracy: 78.06% → 78.10% (+0.04 pts)" in report("dataset")
    assert "Test accuracy: 78.06% → 78.10% (+0.04 pts)" in report(None)  # runs recorded before the prior was


def test_a_fine_tune_report_shows_the_change_the_gate_decided_on() -> None:
    live, candidate = GateScores(1529 / 1741, 0.6, None), GateScores(1524 / 1741, 0.6, None)
    decision = decide(live, candidate, max_test_drop_points=0.5)
    report = RunReport("promoted", "ok", "gru-a", "gru-b", live.as_dict(), candidate.as_dict(), {"holdout": 0}, 1.0)
    assert decision.reason.startswith("test accuracy -0.28 points")
    assert "Test accuracy: 87.82% → 87.54% (-0.28 pts)" in run_report(report)


def test_a_failed_fine_tune_is_reported_by_its_error_line_not_a_trailing_link() -> None:
    traceback = [
        "Traceback (most recent call last):",
        '  File "/app/bot/finetune_job.py", line 150, in _gather',
        "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) unable to open database file",
        "(Background on this error at: https://sqlalche.me/e/20/e3q8)",
    ]
    assert failure_reason(traceback) == traceback[2]
    cli_error = ["nameorigin finetune: error: cannot fine-tune: dataset folder data/names does not exist"]
    assert failure_reason(cli_error) == cli_error[0]
    assert failure_reason(["Segmentation fault"]) == "Segmentation fault"
    assert failure_reason([]) is None


def test_the_fine_tune_child_ignores_packages_in_the_bot_s_working_folder(tmp_path: Path) -> None:
    decoy = tmp_path / "core"  # say, a Django app named core in the folder the bot runs from
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy core package was imported')")
    command = [*child_command(force=True)[:4], "finetune", "--help"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: nameorigin finetune")


def test_the_fine_tune_child_gets_its_settings_but_none_of_the_bot_s_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in [("TELEGRAM_BOT_TOKEN", "9:xyzzy-token"), ("telegram_bot_token", "9:xyzzy-token"),
                        ("WEBHOOK_SECRET", "xyzzy-webhook-secret"), ("LOG_SALT", "xyzzy-salt-for-hashes")]:  # fmt: skip
        monkeypatch.setenv(name, value)
    settings = load_settings(Settings, finetune_threads=2, prediction_prior="uniform")
    environment = child_environment(settings)
    assert not [value for value in environment.values() if "xyzzy" in value]
    assert environment["FINETUNE_THREADS"] == environment["OMP_NUM_THREADS"] == "2"
    assert environment["PREDICTION_PRIOR"] == "uniform"
