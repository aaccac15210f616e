"""Keep the bot's secrets out of everything it logs or prints, whichever library wrote the line."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from bot.config import Settings

# The token's secret half is hidden on its own only from this length (a real one has 35 characters):
# shorter, it could match ordinary text ("1:x" in tests).
MIN_TOKEN_SECRET = 16


def secrets_of(settings: Settings) -> list[tuple[str, str]]:
    """Each secret in ``settings`` with the placeholder that replaces it, longest first.

    The token's secret half is hidden on its own too: a library's message may quote the URL cut
    apart (a port that is not a number), so only the part after the colon stands whole.
    """
    token = settings.telegram_bot_token.get_secret_value()
    pairs = [(token, "<TELEGRAM_BOT_TOKEN>")]
    secret_half = token.partition(":")[2]
    if len(secret_half) >= MIN_TOKEN_SECRET:
        pairs.append((secret_half, "<TELEGRAM_BOT_TOKEN>"))
    for name, value in (("WEBHOOK_SECRET", settings.webhook_secret), ("LOG_SALT", settings.log_salt)):
        if value is not None and value.get_secret_value():
            pairs.append((value.get_secret_value(), f"<{name}>"))
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def redact(text: str, secrets: Sequence[tuple[str, str]]) -> str:
    """``text`` with every secret replaced by its placeholder."""
    for secret, placeholder in secrets:
        text = text.replace(secret, placeholder)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites each record's message, traceback and stack without the secrets."""

    def __init__(self, secrets: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self._secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it and never raises, whatever the record holds."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed call ("%d" % "x"), or an argument whose str() fails
            message = f"unformattable log call: {record.msg!r}"
        record.msg, record.args = redact(message, self._secrets), None
        try:
            if record.exc_info and not record.exc_text:  # formatted now, so the handler prints the redacted text
                record.exc_text = logging.Formatter().formatException(record.exc_info)
        except Exception:
            record.exc_text = "(the traceback could not be formatted)"
        record.exc_info = None  # the handler must print the redacted text, not format the exception again
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        return True


@contextlib.contextmanager
def redacted_logs(settings: Settings) -> Iterator[None]:
    """While inside, no log line shows ``settings``' secrets.

    Every handler of the root logger gets a ``RedactingFilter``, and httpx stops logging each request's
    URL (which holds the token) at INFO, as it does under ``nameorigin -v``.
    """
    redacting = RedactingFilter(secrets_of(settings))
    handlers = list(logging.getLogger().handlers)
    httpx_logger = logging.getLogger("httpx")
    httpx_level = httpx_logger.level
    httpx_logger.setLevel(max(logging.WARNING, httpx_level))
    for handler in handlers:
        handler.addFilter(redacting)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(redacting)
        httpx_logger.setLevel(httpx_level)
