"""Helpers shared by the CLI subcommands. Importing them imports no torch: commands import it when they run."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from core.choices import DEVICE_CHOICES, MODEL_KINDS, PRIORS
from core.data import DatasetError
from core.download import DownloadError
from core.errors import CheckpointError, DeviceUnavailableError, PlotError

if TYPE_CHECKING:
    import torch

Subparsers = Any  # argparse's _SubParsersAction is private; typed loosely on purpose


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


class ReaderGone(Exception):
    """Whoever read the command's standard output stopped reading (``nameorigin predict ... | head``)."""


class Terminated(BaseException):
    """SIGTERM arrived (``kill``, ``docker stop``): unwinds like Ctrl-C, past ``except Exception`` handlers."""


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``Terminated`` instead of ending the process on the spot.

    The default action kills at once, so ``finally`` blocks never run: a download's temporary folder and
    half-written files stayed behind. Unwinding removes them; the CLI then exits with 143, as if killed.
    Like Ctrl-C, the signal takes effect between Python steps: one that lands just after a checkpoint was
    moved into place exits 143 with the whole file saved.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        # A second SIGTERM must not break off the clean-up the first one started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    # None: a handler not set from Python, which cannot be put back; the default is what it did.
    previous = signal.signal(signal.SIGTERM, terminate) or signal.SIG_DFL
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def stdout_to_a_reader_that_may_leave() -> Iterator[None]:
    """Turn a broken standard output into ``ReaderGone``, so the command stops quietly as Unix tools do.

    Any other failure to write (``>&-``, ``>/dev/full``) becomes a one-line ``CommandError``. Whatever
    the block prints must be flushed inside it, or the failure only comes at exit, as a traceback.
    """
    if sys.stdout is None:  # the shell closed it: ``nameorigin predict Smith >&-``
        raise CommandError("cannot write the output: standard output is closed")
    try:
        yield
    except BrokenPipeError:
        _discard_stdout()
        raise ReaderGone from None
    except OSError as exc:
        _discard_stdout()
        raise CommandError(f"cannot write the output: {exc.strerror or exc}") from exc


def _discard_stdout() -> None:
    # Point stdout at /dev/null: the interpreter's last flush at exit would otherwise fail again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def non_empty_path(text: str) -> str:
    """An argparse type: a path that is not the empty string, which would otherwise mean the default or ``.``."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def whole_number(text: str, low: int, high: int | None = None) -> int:
    """``text`` as an integer from ``low`` to ``high`` (no upper bound when None), or an argparse error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
    return value


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's expected failures into one-line ``CommandError``s."""
    try:
        yield
    except (DatasetError, CheckpointError, DeviceUnavailableError, DownloadError, PlotError) as exc:
        raise CommandError(str(exc)) from exc


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|mps``."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="compute device (default: auto)")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model gru|rnn`` and ``--checkpoint PATH`` (which wins when given)."""
    parser.add_argument("--model", choices=MODEL_KINDS, default="gru", help="shipped model to use (default: gru)")
    parser.add_argument(
        "--checkpoint", type=non_empty_path, help="a checkpoint file to use instead of the shipped model"
    )


def add_prior_option(parser: argparse.ArgumentParser) -> None:
    """``--prior dataset|uniform``: how common each language is assumed to be before reading a name."""
    parser.add_argument(
        "--prior",
        choices=PRIORS,
        default="dataset",
        help="dataset: languages as common as the model learned from its training data; "
        "uniform: every language equally likely, better for names from elsewhere (default: dataset)",
    )


def device_from(args: argparse.Namespace) -> torch.device:
    """Resolve ``--device`` once, at the entry point."""
    from core.device import resolve_device

    with user_errors():
        return resolve_device(args.device)
