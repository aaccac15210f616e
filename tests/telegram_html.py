"""Telegram's HTML parse mode, as the fake Bot API applies it: plain text plus entities with UTF-16 offsets."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

_ENTITY_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "code": "code",
    "pre": "pre",
    "u": "underline",
    "s": "strikethrough",
}


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


class _HTMLToEntities(HTMLParser):
    """Turn Telegram-flavoured HTML into plain text plus entities with UTF-16 offsets."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = ""
        self.entities: list[dict[str, Any]] = []
        self._open: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ENTITY_TAGS:
            raise ValueError(f'Bad Request: can\'t parse entities: unsupported start tag "{tag}"')
        self._open.append((tag, utf16_len(self.text)))

    def handle_endtag(self, tag: str) -> None:
        if not self._open or self._open[-1][0] != tag:
            raise ValueError(f'Bad Request: can\'t parse entities: unexpected end tag "{tag}"')
        _, start = self._open.pop()
        length = utf16_len(self.text) - start
        if length:
            self.entities.append({"type": _ENTITY_TAGS[tag], "offset": start, "length": length})

    def handle_data(self, data: str) -> None:
        self.text += data


def render(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    """What Telegram stores for a message sent with ``parse_mode``."""
    if parse_mode != "HTML":
        return text, []
    parser = _HTMLToEntities()
    parser.feed(text)
    parser.close()
    if parser._open:
        raise ValueError("Bad Request: can't parse entities: unclosed tag")
    return parser.text, sorted(parser.entities, key=lambda e: (e["offset"], -e["length"]))
