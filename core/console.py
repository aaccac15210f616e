"""The ``nameorigin`` console script's entry point, kept apart from ``core.cli`` so that it imports nothing heavy."""

from __future__ import annotations


def run() -> None:
    """Run the CLI and exit with its status.

    Ctrl-C while the CLI is still being imported (a moment: torch comes later, inside ``main``) stops the
    command quietly with status 130, as it does once the command runs, rather than with a traceback.
    """
    try:
        from core.cli import main
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(main())
