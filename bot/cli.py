"""``nameorigin serve`` and ``nameorigin db``: registered through the ``nameorigin.commands`` entry point.

Heavy imports (torch, telegram, SQLAlchemy) happen inside the handlers, as ``core.cli`` explains.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from core.cli.common import CommandError, stdout_to_a_reader_that_may_leave, whole_number

if TYPE_CHECKING:
    from bot.config import SettingsT


def register(commands: Any) -> None:
    """Add ``serve``, ``db upgrade|downgrade|current|copy``, ``finetune`` and ``doctor``."""
    serve = commands.add_parser("serve", help="run the Telegram bot (long polling, or webhooks with WEBHOOK_URL)")
    serve.set_defaults(handler=run_serve)
    db = commands.add_parser("db", help="manage the bot's database")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="apply migrations (default: to head)")
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision (default: head, the newest)")
    upgrade.set_defaults(handler=run_db)
    downgrade = actions.add_parser("downgrade", help="revert migrations to REVISION (-1: one step; base: drop all)")
    # No default: reverting to "base" drops every table, which nobody should get by leaving out an argument.
    downgrade.add_argument("revision", help="target revision: an id, -1 for one step back, or base")
    downgrade.set_defaults(handler=run_db)
    current = actions.add_parser("current", help="print the database's revision")
    current.set_defaults(handler=run_db)
    copy = actions.add_parser(
        "copy", help="copy every row of the database at SOURCE_URL into DATABASE_URL's, which must be empty"
    )
    copy.add_argument("source", metavar="SOURCE_URL", help="e.g. sqlite+aiosqlite:///data/nameorigin.db")
    copy.set_defaults(handler=run_db_copy)
    finetune = commands.add_parser(
        "finetune",
        help="fine-tune the live GRU on trusted feedback, gate it, and promote it if it passes (FINETUNE_MAX_DROP)",
    )
    finetune.add_argument("--force", action="store_true", help="run even with fewer than FINETUNE_MIN_NEW new verdicts")
    finetune.add_argument("--json", action="store_true", help="print the report as one JSON line")
    finetune.add_argument(
        "--nice",
        type=niceness,
        default=0,
        metavar="N",
        help="lower this process's CPU priority by N, 0 to 19 (default: 0)",
    )
    finetune.set_defaults(handler=run_finetune_command)
    doctor = commands.add_parser("doctor", help="check settings, database, model and dataset; name what is missing")
    doctor.set_defaults(handler=run_doctor)


def niceness(text: str) -> int:
    """An argparse type: how much to lower the CPU priority, 0 to 19 (raising it is not a fine-tune's business)."""
    return whole_number(text, 0, 19)


def _settings(kind: type[SettingsT]) -> SettingsT:
    from bot.config import SettingsError, load_settings

    try:
        return load_settings(kind)
    except SettingsError as exc:
        raise CommandError(str(exc)) from exc


def run_db(args: argparse.Namespace) -> int:
    """Apply, revert or show migrations on ``DATABASE_URL``."""
    from alembic.util import CommandError as RevisionError

    from bot.config import DatabaseSettings
    from bot.db import migrate

    url = _settings(DatabaseSettings).database_url
    missing = migrate.missing_sqlite_file(url)
    if args.action != "upgrade" and missing is not None:  # connecting would create it, and hide a mistyped path
        raise CommandError(f"there is no database at {missing} yet: `nameorigin db upgrade` or `serve` creates it")
    try:
        with migrate.reaching(url):
            if args.action == "upgrade":
                migrate.upgrade(url, args.revision)
            elif args.action == "downgrade":
                migrate.downgrade(url, args.revision)
            revision = migrate.current_revision(url)
    except migrate.DatabaseUnavailable as exc:
        raise CommandError(str(exc)) from exc
    except RevisionError as exc:  # an unknown id, a step that leads nowhere, or a version table Alembic cannot read
        doing = "read the revision" if args.action == "current" else f"{args.action} to {args.revision!r}"
        raise CommandError(f"cannot {doing}: {exc}") from exc
    with stdout_to_a_reader_that_may_leave():
        print(f"database at revision {revision or 'base (empty)'}", flush=True)
    return 0


def run_db_copy(args: argparse.Namespace) -> int:
    """Migrate DATABASE_URL, then copy SOURCE_URL's rows into it (SQLite to PostgreSQL, with the bot stopped)."""
    import asyncio

    from bot.config import DatabaseSettings
    from bot.db import migrate
    from bot.db.copy import CopyRefused, copy_database

    target = _settings(DatabaseSettings).database_url
    missing = migrate.missing_sqlite_file(args.source)
    if missing is not None:
        raise CommandError(f"there is no database at {missing}")
    try:
        with migrate.reaching(args.source):
            revision = migrate.current_revision(args.source)
        if revision != migrate.head_revision():  # upgrading it is for the release that runs it, not for a copy
            raise CommandError(
                f"the source is at revision {revision}, not {migrate.head_revision()}: "
                "run `nameorigin db upgrade` on it first (DATABASE_URL=SOURCE_URL)"
            )
        with migrate.reaching(target):
            at = migrate.current_revision(target)
            if at not in (None, migrate.head_revision()):  # refused before it is upgraded: it may be a live database
                raise CommandError(
                    f"the target DATABASE_URL is at revision {at}: copy into an empty database "
                    "(`nameorigin db downgrade base` empties one)"
                )
            migrate.upgrade(target)
            copied = asyncio.run(copy_database(args.source, target))
    except (migrate.DatabaseUnavailable, CopyRefused) as exc:
        raise CommandError(f"cannot copy: {exc}") from exc
    with stdout_to_a_reader_that_may_leave():
        print("copied " + ", ".join(f"{count} {table}" for table, count in copied.items()), flush=True)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Migrate the database, then run the bot until interrupted."""
    from bot.config import Settings

    settings = _settings(Settings)  # before the heavy imports (torch, telegram): a mistake is told at once
    from bot.db.migrate import DatabaseUnavailable
    from bot.server import PollingStopped, StartupError, run
    from core.errors import CheckpointError

    try:
        run(settings)
    # A model that cannot load (or answer under PREDICTION_PRIOR), a database out of reach, Telegram
    # refusing the token or out of reach, a port taken: each is one line, never a traceback.
    except (CheckpointError, DatabaseUnavailable, StartupError) as exc:
        raise CommandError(f"cannot start the bot: {exc}") from exc
    except PollingStopped as exc:  # status 2 after a clean stop: systemd's Restart=on-failure, Docker's policy
        raise CommandError(f"the bot stopped: {exc}") from exc
    return 0


def run_finetune_command(args: argparse.Namespace) -> int:
    """One fine-tune run; prints its report. Exit 0 when it ran or was skipped, 75 when another run is busy."""
    from bot.config import FinetuneSettings
    from core.paths import file_in_the_way

    settings = _settings(FinetuneSettings)
    # Its lock, and any candidate, go there. (Whether it may write is left to the writes: a read-only
    # MODEL_DIR holding a writable lock file and versions/ folder works.)
    blocking = file_in_the_way(settings.model_dir)
    if blocking is not None:
        raise CommandError(f"cannot fine-tune: MODEL_DIR {settings.model_dir}: {blocking} is not a folder")
    # Only now the heavy imports (torch): a mistake above is told at once.
    from sqlalchemy.exc import DBAPIError

    from bot.db import migrate
    from bot.finetune_job import limit_resources, run_finetune
    from bot.run_report import EXIT_BUSY
    from core.data import DatasetError
    from core.errors import CheckpointError

    limit_resources(settings.finetune_threads, args.nice)
    try:
        with migrate.reaching(settings.database_url):
            migrate.upgrade(settings.database_url)
        report = run_finetune(settings, force=args.force)
    except (DatasetError, CheckpointError, migrate.DatabaseUnavailable) as exc:
        raise CommandError(f"cannot fine-tune: {exc}") from exc
    except OSError as exc:  # MODEL_DIR missing, unwritable or full
        where = f": {exc.filename}" if exc.filename else ""
        raise CommandError(f"cannot fine-tune: {exc.strerror or exc}{where}") from exc
    except DBAPIError as exc:  # the database failed mid-run (locked past the busy timeout, gone): nothing was kept
        raise CommandError(f"cannot fine-tune: database error: {exc.orig}") from exc
    with stdout_to_a_reader_that_may_leave():
        if args.json:
            print(report.to_json())
        else:
            from bot import admin_views  # imports telegram: only for this text, never in the bot's --json child

            print(f"{report.status}: {report.message}")
            if report.version and report.status in ("promoted", "rejected"):  # what cron mails should name
                print(f"  candidate {report.version}, fine-tuned from {report.live_version}")
            if report.live and report.candidate:
                for line in admin_views.figure_lines(report.live, report.candidate, report.feedback):
                    print(f"  {line}")
            if report.feedback:  # a busy run looked at nothing
                print(f"  {admin_views.feedback_line(report.feedback)} ({report.seconds:.1f} s)")
        sys.stdout.flush()
    return EXIT_BUSY if report.status == "busy" else 0


def run_doctor(args: argparse.Namespace) -> int:
    """Print one line per check; exit 1 when something will not work."""
    import asyncio

    from bot.doctor import Status, diagnose

    findings = asyncio.run(diagnose())
    with stdout_to_a_reader_that_may_leave():  # `nameorigin doctor | head -1` ends quietly
        for finding in findings:
            print(finding)
        sys.stdout.flush()
    return 1 if any(finding.status is Status.PROBLEM for finding in findings) else 0
