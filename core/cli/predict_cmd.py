"""``nameorigin predict``: classify names from the arguments or from stdin."""

from __future__ import annotations

import argparse
import codecs
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING

from core.cli.common import (
    CommandError,
    Subparsers,
    add_device_option,
    add_model_options,
    add_prior_option,
    device_from,
    stdout_to_a_reader_that_may_leave,
    user_errors,
)
from core.guesses import Guess, Rejected
from core.text import LINE_END, displayable

if TYPE_CHECKING:
    from core.predict import Predictor

# Lines are classified in chunks so stdin of any length streams with bounded memory.
CHUNK = 512
ECHO_CHARS = 80  # a line that cannot be classified is quoted back up to this long; the rest is cut, not printed
READ_BYTES = 1 << 16


def register(commands: Subparsers) -> None:
    """Add the ``predict`` command."""
    parser = commands.add_parser("predict", help="guess the language of origin of surnames")
    parser.add_argument("names", nargs="*", metavar="NAME", help="surnames or full names; none reads stdin")
    parser.add_argument("--top-k", type=int, default=3, help="how many languages to show (default: 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per input line")
    add_model_options(parser)
    add_prior_option(parser)
    add_device_option(parser)
    parser.set_defaults(handler=run)


def load_predictor(args: argparse.Namespace) -> Predictor:
    """The predictor that ``--checkpoint`` or ``--model`` names, on ``--device``."""
    from core.predict import Predictor

    device = device_from(args)
    with user_errors():
        if args.checkpoint is not None:
            return Predictor.from_path(args.checkpoint, device, prior=args.prior)
        return Predictor.shipped(args.model, device, prior=args.prior)


def to_json(result: Guess | Rejected) -> str:
    """The documented JSON line for one result."""
    if isinstance(result, Rejected):
        return json.dumps({"name": displayable(result.raw), "error": result.reason})
    predictions = [{"language": g.language, "probability": round(g.probability, 4)} for g in result.predictions]
    payload = {"name": result.query.raw, "normalized": result.query.surname, "predictions": predictions}
    return json.dumps(payload)  # ASCII: no encoding can fail, and no U+2028 splits the line for a reader


def escaped(text: str) -> str:
    """``text`` with every unprintable character (line breaks, terminal escapes, U+2028) as a ``\\`` escape.

    One input then stays one line of output, and nothing in a name can drive the terminal.
    """
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def to_text(result: Guess | Rejected) -> str:
    """A human-readable line for one result."""
    if isinstance(result, Rejected):
        shown = displayable(result.raw)
        shown = shown if len(shown) <= ECHO_CHARS else f"{shown[:ECHO_CHARS]}…"
        return f"{shown!r}: error: {result.reason}"
    ranked = ", ".join(f"{g.language} {g.probability:.1%}" for g in result.predictions)
    label = escaped(displayable(result.query.raw.strip()))
    if result.query.from_full_name or result.query.surname != label:
        label = f"{label} (as {result.query.surname})"
    note = "  [uncertain]" if result.uncertain else ""
    return f"{label}: {ranked}{note}"


def _chunks(lines: Iterable[str], size: int = CHUNK) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line.rstrip("\r\n"))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def stdin_chunks() -> Iterator[list[str]]:
    """stdin's lines, read as UTF-8, in chunks of whatever has arrived (see ``chunks_as_they_arrive``)."""
    if sys.stdin is None:  # the shell closed it (``<&-``): the names asked for cannot be read
        raise CommandError("cannot read standard input: it is closed")
    try:
        descriptor = sys.stdin.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # stdin replaced by an in-memory stream
        yield from _chunks(sys.stdin)
        return
    yield from chunks_as_they_arrive(lambda: read_stdin(descriptor))


def read_stdin(descriptor: int) -> bytes:
    """The next bytes of stdin; a failed read (stdin opened write-only: ``0>>file``) is a ``CommandError``."""
    try:
        return os.read(descriptor, READ_BYTES)
    except OSError as exc:
        raise CommandError(f"cannot read standard input: {exc.strerror or exc}") from exc


def chunks_as_they_arrive(read: Callable[[], bytes], size: int = CHUNK) -> Iterator[list[str]]:
    """The lines that ``read`` returns (``b""`` at the end), in chunks of at most ``size``; see ``LINE_END``.

    A read from a pipe or terminal returns what has arrived, without waiting for more: a long file
    still comes in full chunks, yet a name typed at a terminal, or written by a program that waits
    for each answer, is answered at once. Bytes that are not UTF-8 become lone surrogates, which
    ``parse_query`` rejects with a clear error; a line split between reads is put back together.
    """
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8" starts with one) is no part of the first name.
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="surrogateescape")
    pieces: list[str] = []  # a line still arriving; joined only once it ends, so a huge line costs linear time
    after_cr = False  # the last read ended with "\r": a "\n" starting the next one ends no other line
    while True:
        data = read()
        text = decoder.decode(data, final=not data)
        if after_cr and text:
            text, after_cr = text.removeprefix("\n"), False
        if data and "\n" not in text and "\r" not in text:
            pieces.append(text)
            continue
        joined = "".join([*pieces, text])
        # A line ended by "\r" is answered now, not when the next read shows whether a "\n" follows.
        after_cr = joined.endswith("\r")
        lines = LINE_END.split(joined)
        pieces = [lines.pop()]  # the text after the last line end
        if not data and pieces[0]:
            lines.append(pieces[0])  # the last line had no line end
        for start in range(0, len(lines), size):
            yield lines[start : start + size]
        if not data:
            return


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # closed, or replaced by something without a descriptor
        return False


def run(args: argparse.Namespace) -> int:
    """Classify every input and print one line per input, in order."""
    predictor = load_predictor(args)
    if not 1 <= args.top_k <= len(predictor.labels):
        raise CommandError(f"--top-k must be between 1 and {len(predictor.labels)}")
    render = to_json if args.json else to_text
    if not args.names and _is_terminal(sys.stdin):  # otherwise the command seems to hang
        print(
            "reading names from standard input, one per line; end with Ctrl-D (Ctrl-Z, Enter on Windows)",
            file=sys.stderr,
        )
    chunks = _chunks(args.names) if args.names else stdin_chunks()
    with stdout_to_a_reader_that_may_leave():
        for chunk in chunks:
            for result in predictor.predict_many(chunk, args.top_k):
                print(render(result), flush=False)
            sys.stdout.flush()  # a reader waiting for these answers gets them now
    return 0
