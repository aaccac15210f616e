"""Compact, validated inline-button payloads (Telegram allows at most 64 bytes).

Format: ``<action>:<guess id>[:<language index>]``, e.g. ``v:1234:14`` (verdict: Russian).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from telegram import InlineKeyboardMarkup

from core.data import LANGUAGES

MAX_BYTES = 64
# guesses.id is an INTEGER column: 32 bits on PostgreSQL, where a larger forged id would fail the query.
MAX_GUESS_ID = 2**31 - 1
_PATTERN = re.compile(r"(?P<action>[vob]):(?P<guess>[1-9][0-9]{0,9})(?::(?P<language>[0-9]{1,2}))?")


class Action(Enum):
    """What a button does."""

    VERDICT = "v"  # record the chosen language
    OTHER = "o"  # open the full language keyboard
    BACK = "b"  # return to the short keyboard


class MalformedCallback(ValueError):
    """The payload is not one this bot produced."""


@dataclass(frozen=True)
class ButtonPayload:
    """A parsed button press."""

    action: Action
    guess_id: int
    language: str | None = None

    def encode(self) -> str:
        """The string to put in ``callback_data``."""
        text = f"{self.action.value}:{self.guess_id}"
        if self.language is not None:
            text += f":{LANGUAGES.index(self.language)}"
        assert len(text.encode()) <= MAX_BYTES
        return text


def decode(data: str | None) -> ButtonPayload:
    """Parse and validate ``callback_data``; raises ``MalformedCallback`` on anything unexpected."""
    # surrogatepass: a lone surrogate (JSON can spell one) is measured, then fails the pattern, rather than
    # raising UnicodeEncodeError past the handler that answers malformed presses.
    if not data or len(data.encode(errors="surrogatepass")) > MAX_BYTES:
        raise MalformedCallback("empty or oversized callback data")
    match = _PATTERN.fullmatch(data)
    if match is None:
        raise MalformedCallback(f"unrecognized callback data {data!r}")
    action = Action(match["action"])
    guess_id = int(match["guess"])
    if guess_id > MAX_GUESS_ID:
        raise MalformedCallback(f"guess id {guess_id} out of range")
    language_index = match["language"]
    if (action is Action.VERDICT) != (language_index is not None):
        raise MalformedCallback("a verdict needs a language and only a verdict has one")
    language = None
    if language_index is not None:
        index = int(language_index)
        if index >= len(LANGUAGES):
            raise MalformedCallback(f"language index {index} out of range")
        language = LANGUAGES[index]
    return ButtonPayload(action=action, guess_id=guess_id, language=language)


def guess_ids_on(markup: InlineKeyboardMarkup | None) -> set[int]:
    """The guesses the buttons of ``markup`` are about (none for no keyboard, or buttons not of this bot)."""
    ids = set()
    for row in markup.inline_keyboard if markup is not None else ():
        for button in row:
            try:
                ids.add(decode(button.callback_data if isinstance(button.callback_data, str) else None).guess_id)
            except MalformedCallback:
                continue
    return ids
