"""The ``nameorigin`` console script's entry point, kept apart from ``core.cli`` so that it imports nothing heavy."""

from __future__ import annotations


def run() -> None:
    """Run the CLI and exit with its status.

    Importing the CLI imports torch, which takes a second or more: Ctrl-C in that time stops the command
    quietly with status 130, as it does once the command runs, rather than with a traceback from torch.
    """
    try:
        from core.cli import main
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(main())
