"""``nameorigin data download``."""

from __future__ import annotations

import argparse

from core.cli.common import (
    Subparsers,
    non_empty_path,
    sigterm_unwinds,
    stdout_to_a_reader_that_may_leave,
    user_errors,
)
from core.data import resolve_data_dir
from core.download import ARCHIVE_URL, download_dataset


def register(commands: Subparsers) -> None:
    """Add the ``data`` command group."""
    parser = commands.add_parser("data", help="manage the surnames dataset")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    download = actions.add_parser("download", help="fetch and verify the official archive")
    download.add_argument("--dir", type=non_empty_path, help="target folder (default: $NAMES_DATA_DIR or data/names)")
    download.add_argument("--url", default=ARCHIVE_URL, help=argparse.SUPPRESS)
    download.set_defaults(handler=run_download)


def run_download(args: argparse.Namespace) -> int:
    """Download the dataset into ``--dir``."""
    with sigterm_unwinds(), user_errors():
        target = download_dataset(resolve_data_dir(args.dir), url=args.url)
    with stdout_to_a_reader_that_may_leave():
        print(f"verified 18 language files in {target}", flush=True)
    return 0
