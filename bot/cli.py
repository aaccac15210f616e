"""``nameorigin serve`` and ``nameorigin db``: registered through the ``nameorigin.commands`` entry point.

Heavy imports (telegram, SQLAlchemy) happen inside the handlers, so core commands stay fast.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from core.cli.common import CommandError

if TYPE_CHECKING:
    from bot.config import SettingsT


def register(commands: Any) -> None:
    """Add ``serve`` and ``db upgrade|downgrade|current``."""
    serve = commands.add_parser("serve", help="run the Telegram bot (long polling)")
    serve.set_defaults(handler=run_serve)
    db = commands.add_parser("db", help="manage the bot's database")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="apply migrations (default: to head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=run_db)
    downgrade = actions.add_parser("downgrade", help="revert migrations (default: to base)")
    downgrade.add_argument("revision", nargs="?", default="base")
    downgrade.set_defaults(handler=run_db)
    current = actions.add_parser("current", help="print the database's revision")
    current.set_defaults(handler=run_db)


def _settings(kind: type[SettingsT]) -> SettingsT:
    from bot.config import SettingsError, load_settings

    try:
        return load_settings(kind)
    except SettingsError as exc:
        raise CommandError(str(exc)) from exc


def run_db(args: argparse.Namespace) -> int:
    """Apply, revert or show migrations on ``DATABASE_URL``."""
    from bot.config import DatabaseSettings
    from bot.db import migrate

    url = _settings(DatabaseSettings).database_url
    if args.action == "upgrade":
        migrate.upgrade(url, args.revision)
    elif args.action == "downgrade":
        migrate.downgrade(url, args.revision)
    print(f"database at revision {migrate.current_revision(url) or 'base (empty)'}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Migrate the database, then run the bot until interrupted."""
    from bot.app import run_polling
    from bot.config import Settings

    settings = _settings(Settings)
    run_polling(settings)
    return 0
