"""Load the surnames dataset: 18 ``<Language>.txt`` files, one surname per line."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from core.text import LINE_END, MAX_INPUT_CHARS, clean_surname

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "NAMES_DATA_DIR"
_LINE_END_BYTES = re.compile(LINE_END.pattern.encode())  # the same ends, counted in the raw bytes
DEFAULT_DATA_DIR = Path("data/names")

LANGUAGES: tuple[str, ...] = (
    "Arabic", "Chinese", "Czech", "Dutch", "English", "French", "German", "Greek", "Irish",
    "Italian", "Japanese", "Korean", "Polish", "Portuguese", "Russian", "Scottish", "Spanish",
    "Vietnamese",
)  # fmt: skip


class DatasetError(Exception):
    """The dataset folder or one of its files cannot be used; the message names the problem."""


@dataclass(frozen=True)
class Example:
    """One distinct surname and every language it is filed under (set-valued truth)."""

    name: str
    languages: frozenset[str]

    @property
    def key(self) -> str:
        """Identity used for deduplication and for keeping splits name-disjoint."""
        return self.name.lower()


@dataclass(frozen=True)
class DatasetAudit:
    """What loading found and changed, so evaluation can show it rather than hide it."""

    raw_lines: int
    blank_lines: int
    duplicate_pairs: int
    # Lines whose text changed under normalization (accents, digits, stray symbols).
    normalized_lines: int
    distinct_pairs: int
    distinct_names: int
    multi_language_names: int
    per_language: dict[str, int]


@dataclass(frozen=True)
class Dataset:
    """The deduplicated examples, the label order, and a hash identifying the source files."""

    examples: tuple[Example, ...]
    labels: tuple[str, ...]
    sha256: str
    audit: DatasetAudit


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return ``data_dir`` if given, else ``$NAMES_DATA_DIR``, else ``data/names``."""
    if data_dir is not None:
        return Path(data_dir)
    from_env = os.environ.get(DATA_DIR_ENV, "").strip()  # blank: unset, as the bot reads it
    return Path(from_env) if from_env else DEFAULT_DATA_DIR


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder, not a file of names")
    if path.is_symlink() and not path.exists():
        raise DatasetError(
            f"{path}: is a broken symbolic link (it points to {os.readlink(path)}, which does not exist)"
        )
    if path.exists() and not path.is_file():  # reading a pipe would wait forever
        raise DatasetError(f"{path}: is a device, pipe or socket, not a file of names")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _decode_lines(path: Path, raw: bytes) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_number = len(_LINE_END_BYTES.findall(raw[: exc.start])) + 1
        raise DatasetError(f"{path}: line {line_number} is not valid UTF-8 ({exc.reason})") from exc
    if (nul := raw.find(b"\0")) >= 0:
        # UTF-16 text of Latin names is valid UTF-8 with a NUL after each letter: cleaning would drop the
        # NULs and read most names right and the rest wrong, without a word.
        line_number = len(_LINE_END_BYTES.findall(raw[:nul])) + 1
        raise DatasetError(f"{path}: line {line_number} holds a NUL byte: is the file UTF-16? Save it as UTF-8")
    lines = LINE_END.split(text)
    return lines[:-1] if lines[-1] == "" else lines


def _missing_folder(folder: Path, data_dir: str | os.PathLike[str] | None) -> DatasetError:
    # The hint fits where the path came from: nobody who typed a path wants to be told to set a variable.
    if data_dir is None and not os.environ.get(DATA_DIR_ENV):
        return DatasetError(
            f"dataset folder {folder} does not exist: set {DATA_DIR_ENV} or run 'nameorigin data download'"
        )
    origin = f" ({DATA_DIR_ENV})" if data_dir is None else ""
    hint = f"check the path, or fetch the files there with 'nameorigin data download --dir {folder}'"
    return DatasetError(f"dataset folder {folder}{origin} does not exist: {hint}")


def _check_folder(folder: Path, data_dir: str | os.PathLike[str] | None) -> None:
    if folder.exists() and not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} is not a folder: give the folder that holds the 18 files")
    if not folder.is_dir():
        raise _missing_folder(folder, data_dir)
    present = {p.name for p in folder.glob("*.txt")}
    expected = {f"{language}.txt" for language in LANGUAGES}
    missing = sorted(expected - present)
    unexpected = sorted(present - expected)
    if missing:
        raise DatasetError(f"{folder}: missing language files: {', '.join(missing)}")
    if unexpected:
        raise DatasetError(f"{folder}: unexpected files: {', '.join(unexpected)}")


def load_dataset(data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Load, normalize and deduplicate the 18 language files.

    Names are transliterated to ASCII and cleaned exactly as prediction input is;
    (name, language) pairs are deduplicated case-insensitively; a name filed under
    several languages keeps all of them. Raises ``DatasetError`` on any bad file.
    """
    folder = resolve_data_dir(data_dir)
    _check_folder(folder, data_dir)
    digest = hashlib.sha256()
    languages_by_key: dict[str, set[str]] = defaultdict(set)
    display_by_key: dict[str, str] = {}
    raw_lines = blank_lines = duplicate_pairs = normalized_lines = 0
    for language in LANGUAGES:
        path = folder / f"{language}.txt"
        digest.update(f"{language}\0".encode())
        raw = _read_bytes(path)
        digest.update(hashlib.sha256(raw).digest())
        lines = _decode_lines(path, raw)
        kept = 0
        for line_number, line in enumerate(lines, start=1):
            raw_lines += 1
            name = clean_surname(line)
            if not name:
                blank_lines += 1
                continue
            if len(name) > MAX_INPUT_CHARS:  # no one could ask for it, and it would pad its batches to its length
                raise DatasetError(
                    f"{path}: line {line_number} holds a name of {len(name)} characters; at most {MAX_INPUT_CHARS}"
                )
            kept += 1
            if name != line.strip():
                normalized_lines += 1
            key = name.lower()
            if language in languages_by_key[key]:
                duplicate_pairs += 1
                continue
            languages_by_key[key].add(language)
            display_by_key.setdefault(key, name)
        if kept == 0:
            raise DatasetError(f"{path}: the file holds no names")
    examples = tuple(
        Example(name=display_by_key[key], languages=frozenset(langs)) for key, langs in sorted(languages_by_key.items())
    )
    per_language = Counter(lang for ex in examples for lang in ex.languages)
    audit = DatasetAudit(
        raw_lines=raw_lines,
        blank_lines=blank_lines,
        duplicate_pairs=duplicate_pairs,
        normalized_lines=normalized_lines,
        distinct_pairs=sum(per_language.values()),
        distinct_names=len(examples),
        multi_language_names=sum(1 for ex in examples if len(ex.languages) > 1),
        per_language={lang: per_language[lang] for lang in LANGUAGES},
    )
    logger.info("loaded %d names (%d pairs) from %s", audit.distinct_names, audit.distinct_pairs, folder)
    return Dataset(examples=examples, labels=LANGUAGES, sha256=digest.hexdigest(), audit=audit)
