"""Keep the bot's secrets out of everything it logs or prints, whichever library wrote the line."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.config import Settings

# A secret shorter than this could match ordinary text ("1:x" in tests): only the whole token is hidden then.
MIN_PARTIAL_SECRET = 16


def secrets_of(settings: Settings) -> list[tuple[str, str]]:
    """Each secret in ``settings`` with the placeholder that replaces it, longest first.

    The token's secret half is hidden on its own too: a base URL without ``/bot`` runs the bot's id into
    the host or port, so only the part after the colon stands whole in the library's messages.
    """
    token = settings.telegram_bot_token.get_secret_value()
    pairs = [(token, "<TELEGRAM_BOT_TOKEN>")]
    secret_half = token.partition(":")[2]
    if len(secret_half) >= MIN_PARTIAL_SECRET:
        pairs.append((secret_half, "<TELEGRAM_BOT_TOKEN>"))
    for name, value in (("WEBHOOK_SECRET", settings.webhook_secret), ("LOG_SALT", settings.log_salt)):
        if value is not None and len(value.get_secret_value()) >= MIN_PARTIAL_SECRET // 2:
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
        """Redact ``record`` in place; never drops it."""
        record.msg, record.args = redact(record.getMessage(), self._secrets), None
        if record.exc_info and not record.exc_text:  # formatted now, so the handler prints the redacted text
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        return True


def redact_logs(settings: Settings, logger: logging.Logger | None = None) -> RedactingFilter:
    """Install a ``RedactingFilter`` for ``settings``' secrets on every handler of ``logger`` (default: root)."""
    redacting = RedactingFilter(secrets_of(settings))
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(redacting)
    return redacting
