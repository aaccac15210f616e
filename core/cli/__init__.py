"""The ``nameorigin`` console script.

Core registers its own subcommands; other packages (the bot) add theirs through the
``nameorigin.commands`` entry-point group, so ``core`` never imports them.

Parsing arguments imports no torch, numpy or telegram (most of a second): the modules here import only
torch-free ones (``core.choices``, ``core.errors``, ``core.train_config``, ``core.guesses``), and each
command imports the heavy parts inside its handler, after checking its arguments and settings.
``tests/test_cli_imports.py`` holds every command to that.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version

from core.cli import data_cmd, eval_cmd, predict_cmd, train_cmd
from core.cli.common import CommandError, ReaderGone, Terminated

PLUGIN_GROUP = "nameorigin.commands"


def installed_version() -> str:
    """The installed distribution's version; "unknown" when run from a checkout that was never installed."""
    try:
        return version("nameorigin")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every core and plugin subcommand."""
    parser = argparse.ArgumentParser(prog="nameorigin", description="Guess the language of origin of a surname.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (predict_cmd, train_cmd, eval_cmd, data_cmd):
        module.register(commands)
    for plugin in entry_points(group=PLUGIN_GROUP):
        try:
            plugin.load()(commands)
        except Exception:  # a broken plugin must not take the core commands down with it
            logging.getLogger(__name__).exception("could not load CLI plugin %s", plugin.value)
    return parser


def show_what_stdout_cannot_encode() -> None:
    """Write a character stdout's encoding lacks (``Д`` on cp1252) as ``\\u0414`` instead of failing."""
    if isinstance(sys.stdout, io.TextIOWrapper):  # not when closed (None) or replaced by the caller
        sys.stdout.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    show_what_stdout_cannot_encode()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        status: int = args.handler(args)
    except CommandError as exc:
        print(f"nameorigin {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Terminated:
        return 143  # 128 + SIGTERM, what a shell reports for a process the signal killed
    except ReaderGone:
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe
    return status
