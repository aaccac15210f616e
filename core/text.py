"""Text normalization shared by the dataset loader and the predictor.

Both paths must turn a raw string into the same ASCII surname, or the model
would be trained on one alphabet and queried in another.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from unidecode import unidecode

MAX_INPUT_CHARS = 64
# Composing joins at most this many code points into one character (the longest canonical decomposition,
# such as ᾄ: α and three marks), so NFC cannot bring text longer than MAX_INPUT_CHARS times it within the limit.
_MAX_COMPOSED = 4

# Characters a surname may keep after transliteration: O'Brien, Abdel-Malek, De la Cruz.
_DISALLOWED = re.compile(r"[^A-Za-z' -]+")
_PUNCTUATION_ONLY = re.compile(r"[' -]+")
_SPACES = re.compile(r"\s+")
_LETTER = re.compile(r"[A-Za-z]")
# Most inputs are one plain ASCII word; they need no transliteration or cleaning.
_PLAIN_SURNAME = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")
_REPEATED_PUNCTUATION = re.compile(r"([' -])[' -]+")
# Python decodes bytes that are not UTF-8 (in argv, or stdin read with "surrogateescape") to lone surrogates.
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# Control characters other than whitespace (tab, newline...): NUL, escape, delete, the C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")

# Particles that belong to the surname that follows them ("Ludwig van Beethoven"), matched in any case
# because surnames typed alone are often capitalized ("De Luca", "Van Dyke"). The cost is a first name
# that is also a particle: "Al Pacino" keeps "Al Pacino".
SURNAME_PARTICLES = frozenset(
    {
        "al", "bin", "da", "das", "de", "del", "della", "den", "der", "di", "do", "dos", "du",
        "el", "la", "le", "st", "te", "ten", "ter", "van", "von", "zu",
    }
)  # fmt: skip
# Where a line of names ends, for the dataset's files and `predict`'s input alike: "\n", "\r\n" or a lone "\r"
# (old Mac files), and nothing else. str.splitlines would also break a name at U+2028, U+0085 or a form feed.
LINE_END = re.compile(r"\r\n|\r|\n")

# Words after a surname that are no part of it ("Martin Luther King Jr.", "John Smith III", "Jane Doe PhD").
GENERATIONAL_SUFFIXES = frozenset({"jr", "sr"})
DEGREE_SUFFIXES = frozenset({"phd", "md", "esq"})
ROMAN_NUMERAL_SUFFIXES = frozenset({"III", "IV"})
# Separators typed without a space: "J.R.R.Tolkien", "F.Dostoevsky", "first_last". Only a query is split at
# them; the dataset's names hold none, so its cleaning stays as it is. A dot parts words only before a word
# of two letters or more, so "Ph.D.", "M.D." and "J.R." stay whole and are still seen as what they are.
# (Not "/": "</b>" would part a word.)
_WORD_BREAKS = re.compile(r"_|\.(?=[^\W\d_]{2})")
# "Smith, John" (as lists and spreadsheets write names) or "King, Jr.": the surname stands before the comma.
_COMMA = re.compile(r"[,，]")


def _is_suffix(word: str, words: list[str]) -> bool:
    if word.lower() in GENERATIONAL_SUFFIXES | DEGREE_SUFFIXES or word in ROMAN_NUMERAL_SUFFIXES:
        return True
    # "II" is also the Japanese surname Ii: a numeral only in capitals, and in a name all in capitals only
    # after two other words ("Naosuke Ii" and "NAOSUKE II" keep it; "John Smith II", "JOHN SMITH II" drop it).
    return word == "II" and (len(words) >= 3 or not all(other.isupper() for other in words))


class InvalidNameError(ValueError):
    """The input cannot be classified as a surname; the message says why."""


def displayable(text: str) -> str:
    """``text`` safe to print or encode as UTF-8: each lone surrogate (an undecodable byte) becomes U+FFFD."""
    return _SURROGATES.sub("\ufffd", text)


def to_ascii(text: str) -> str:
    """Transliterate to ASCII (``Достоевский`` → ``Dostoevskii``) word by word, one space between words.

    unidecode ends each CJK character with a space (``中村`` → ``Zhong Cun``); those spaces are
    dropped, so a word of the input stays one word (``ZhongCun``) and the last word is still the surname.
    """
    words = (_SPACES.sub("", unidecode(word)) for word in text.split())
    return " ".join(word for word in words if word)  # a word of emoji transliterates to nothing


def _spelled(character: str) -> str:
    """``character`` if it can be part of a name once transliterated; else what it stands for among
    apostrophes, hyphens and spaces (``’`` → ``'``, ``−`` → ``-``); else nothing.

    A character that is no letter must not become letters: unidecode spells ™ as "(tm)", № as "No." and
    € as "EUR", which would become part of the name.
    """
    category = unicodedata.category(character)
    if category[0] in "LMN" or character.isspace():
        return character
    if category == "Cf":  # invisible (a zero-width space, a direction mark): no break between words either
        return ""
    spelled = unidecode(character)
    return spelled if _PUNCTUATION_ONLY.fullmatch(spelled) else ""


def clean_surname(text: str) -> str:
    """Return the ASCII form of ``text`` keeping only letters, apostrophes, hyphens and spaces."""
    ascii_text = to_ascii("".join(map(_spelled, text)))
    kept = _DISALLOWED.sub("", ascii_text)
    kept = _REPEATED_PUNCTUATION.sub(r"\1", kept)
    return kept.strip(" '-")


@dataclass(frozen=True)
class SurnameQuery:
    """A validated user input: the raw text and the ASCII surname the model will see."""

    raw: str
    surname: str
    # True when the input held several words and only the trailing surname is classified.
    from_full_name: bool


def parse_query(raw: str) -> SurnameQuery:
    """Validate user input and pick the surname to classify.

    A full name ("Fyodor Dostoevsky") uses its last word, together with any
    particles before it ("Maria de la Cruz" → "de la Cruz") and without a generational suffix or a
    degree after it ("Martin Luther King Jr." → "King"). A comma puts the surname first, as lists
    write names ("Dostoevsky, Fyodor" → "Dostoevsky"); what follows it is dropped, a suffix
    ("King, Jr.") as well as given names. Dots and underscores part words too
    ("J.R.R.Tolkien" → "Tolkien"). Each word is transliterated as one
    word: unidecode spaces out CJK syllables, and "中村" must stay one surname ("ZhongCun"), not "Cun".
    Raises ``InvalidNameError`` for empty, over-long, undecodable or letterless input.
    """
    stripped = raw.strip()
    if not stripped:
        raise InvalidNameError("empty input: send a surname such as 'Nakamura'")
    if _SURROGATES.search(stripped):
        raise InvalidNameError("not valid UTF-8: the input holds bytes that are not text")
    if control := _CONTROL.search(stripped):
        # Dropped, "S\0m\0i\0t\0h" would be classified as Smith, and UTF-16 text given as UTF-8 reads just so.
        hint = ": is the text UTF-16? Send UTF-8" if control.group() == "\x00" else ""
        raise InvalidNameError(f"holds a control character, U+{ord(control.group()):04X}{hint}")
    # NFC takes time quadratic in a run of combining marks out of canonical order (a line of 100,000 took
    # seconds): text too long to come within the limit composed is turned away before it is normalized.
    if len(stripped) > MAX_INPUT_CHARS * _MAX_COMPOSED:
        raise InvalidNameError(f"too long: {len(stripped)} characters, at most {MAX_INPUT_CHARS}")
    # Read composed: "Ё" typed as Е and a combining diaeresis (as macOS stores file names) is one letter,
    # transliterated as one, and counted as one. A few characters are longer composed (ज़ becomes ज and a
    # nukta): the shorter form is read.
    stripped = min(unicodedata.normalize("NFC", stripped), stripped, key=len)
    if len(stripped) > MAX_INPUT_CHARS:
        raise InvalidNameError(f"too long: {len(stripped)} characters, at most {MAX_INPUT_CHARS}")
    if _PLAIN_SURNAME.fullmatch(stripped):
        return SurnameQuery(raw=raw, surname=stripped, from_full_name=False)
    spaced = _WORD_BREAKS.sub(" ", stripped)
    whole = clean_surname(spaced)
    before_comma = clean_surname(_COMMA.split(spaced, maxsplit=1)[0])
    cleaned = before_comma if _LETTER.search(before_comma) else whole  # ", Smith" has nothing before its comma
    if not _LETTER.search(cleaned):
        raise InvalidNameError("no letters: a surname needs at least one letter")
    words = cleaned.split(" ")
    while len(words) > 1 and _is_suffix(words[-1], words):
        words.pop()
    start = len(words) - 1
    while start > 0 and words[start - 1].lower() in SURNAME_PARTICLES:
        start -= 1
    surname = " ".join(words[start:])
    if not _LETTER.search(surname):
        raise InvalidNameError("no letters: a surname needs at least one letter")
    if len(surname) > MAX_INPUT_CHARS:
        # Transliteration can lengthen text: a Chinese character becomes a syllable of several letters (德 → De).
        raise InvalidNameError(
            f"too long once written in Latin letters: {len(surname)} characters, at most {MAX_INPUT_CHARS}"
        )
    return SurnameQuery(raw=raw, surname=surname, from_full_name=surname != whole)
