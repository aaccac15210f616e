"""Start fine-tune runs from the bot in a child process, one at a time, and swap in what they promote."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.db import versions
from bot.db.models import utcnow
from bot.live_model import LiveModel
from bot.run_report import EXIT_BUSY, RunReport
from core.pipeline import new_version

logger = logging.getLogger(__name__)

# The child runs at lower CPU priority so /guess keeps its core when the machine is busy.
CHILD_NICENESS = 10
STOP_GRACE_S = 10.0
# What the child must not see: it needs neither Telegram nor the keys that protect the bot's traffic and logs.
CHILD_HIDDEN = frozenset({"TELEGRAM_BOT_TOKEN", "WEBHOOK_SECRET", "LOG_SALT"})


@dataclass(frozen=True)
class RunFailed:
    """The child process died or printed no report; the live model is untouched."""

    message: str


RunOutcome = RunReport | RunFailed


def child_command(*, force: bool) -> list[str]:
    """The ``nameorigin finetune`` command line the bot runs."""
    # -P: the bot's working folder stays off the import path, so a folder of its own named core/ or bot/
    # (a Django app, say) cannot shadow this package in the child.
    command = [sys.executable, "-P", "-m", "core.cli", "finetune", "--json", "--nice", str(CHILD_NICENESS)]
    return command + (["--force"] if force else [])


def child_environment(settings: Settings) -> dict[str, str]:
    """The bot's environment with its fine-tune settings, minus the secrets the child never needs."""
    # Settings are read case-insensitively, so drop secrets whatever their spelling.
    environment = {key: value for key, value in os.environ.items() if key.upper() not in CHILD_HIDDEN}
    environment.update(settings.environment())
    environment["OMP_NUM_THREADS"] = str(settings.finetune_threads)
    return environment


# The line naming an uncaught exception ("sqlalchemy.exc.OperationalError: ...") or the CLI's own error line.
_ERROR_LINE = re.compile(r"[A-Za-z_][\w.]*: |nameorigin [\w-]+: error: ")


def failure_reason(stderr_lines: Sequence[str]) -> str | None:
    """The line of a failed child's stderr that says what went wrong: the last error line, else the last line.

    The last line is often not it: SQLAlchemy ends its errors with a "(Background on this error at: …)" link.
    """
    for line in reversed(stderr_lines):
        if _ERROR_LINE.match(line):
            return line
    return stderr_lines[-1] if stderr_lines else None


def _last_report(stdout_lines: Sequence[str]) -> RunReport | None:
    """The report a child printed as its last line, or None when it printed none that parses."""
    if not stdout_lines:
        return None
    try:
        return RunReport.from_json(stdout_lines[-1])
    except (ValueError, TypeError):
        return None


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


class FinetuneRunner:
    """Runs at most one fine-tune child at a time, in a task of its own.

    The task is a plain asyncio task, not one of the Application's, so stopping the bot never waits
    for a run: ``stop`` terminates the child instead, and the live model stays as it was unless the run
    had already committed a promotion.
    """

    def __init__(self, settings: Settings, live: LiveModel, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._settings = settings
        self._live = live
        self._sessions = sessions
        self._task: asyncio.Task[RunOutcome] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False

    @property
    def busy(self) -> bool:
        """Whether a run is in progress."""
        return self._task is not None and not self._task.done()

    @property
    def stopping(self) -> bool:
        """Whether the bot is shutting down (reports are no longer sent)."""
        return self._stopping

    def start(self, *, force: bool) -> asyncio.Task[RunOutcome] | None:
        """Start a run and return its task, or None when one is already running or the bot is stopping."""
        if self.busy or self._stopping:
            return None
        self._task = asyncio.create_task(self._run(force=force), name="finetune")
        return self._task

    async def _run(self, *, force: bool) -> RunOutcome:
        started, rows_before = utcnow(), await self._last_row_id()
        outcome = await self._run_child(force=force)
        if isinstance(outcome, RunFailed) and rows_before is not None:
            outcome = await self._recorded_run(rows_before) or outcome
        if isinstance(outcome, RunFailed) and self._stopping:
            # stop() ended the child on purpose: an abandoned run, not a failure to report or investigate.
            logger.info("fine-tune abandoned as the bot stops (%s); the live model is unchanged", outcome.message)
            await self._record_failure(outcome, started, versions.ABANDONED)
        elif isinstance(outcome, RunFailed):
            logger.error("%s; the live model is unchanged", outcome.message)
            await self._record_failure(outcome, started, versions.FAILED)
        elif outcome.status in ("promoted", "rejected"):
            # The child logs at WARNING: without this line the bot's log would not say how a run ended, or why.
            live = "now live" if outcome.status == "promoted" else f"the live model stays {outcome.live_version}"
            logger.info(
                "fine-tune %s: %s (%s, %s; %.1f s)",
                outcome.status, outcome.message, outcome.version, live, outcome.seconds,
            )  # fmt: skip
        if isinstance(outcome, RunReport) and outcome.status == "promoted" and not self._stopping:
            try:
                await self._live.sync()
            except Exception:  # the promotion is committed; the periodic refresh will pick it up
                logger.exception("could not switch to %s now", outcome.version)
        return outcome

    async def _run_child(self, *, force: bool) -> RunOutcome:
        try:
            self._process = await asyncio.create_subprocess_exec(
                *child_command(force=force),
                env=child_environment(self._settings),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                # Its own session: Ctrl-C in the bot's terminal reaches the bot alone, which then stops the
                # child itself, so the run is recorded as abandoned rather than failed.
                start_new_session=True,
            )
        except OSError as exc:
            return RunFailed(f"the fine-tune process could not start: {exc}")
        if self._stopping:  # stop() came while the process was starting
            self._process.terminate()
        try:
            stdout, stderr = await self._process.communicate()
        finally:
            returncode, self._process = self._process.returncode, None
        errors = stderr.decode(errors="replace").strip().splitlines()
        for line in errors:
            logger.info("fine-tune: %s", line)
        lines = stdout.decode(errors="replace").strip().splitlines()
        report = _last_report(lines)
        if report is not None:
            if returncode not in (0, EXIT_BUSY):
                # The report is the run's last act, after its row was committed: what it says holds, even
                # when the child was stopped while it exited.
                logger.info("the fine-tune process %s after reporting", _describe_exit(returncode or 0))
            return report
        if returncode not in (0, EXIT_BUSY) or not lines:
            message = f"the fine-tune process {_describe_exit(returncode or 0)}"
            reason = failure_reason(errors)
            if reason and returncode and returncode > 0:
                message += f": {reason}"
            return RunFailed(message)
        logger.error("unreadable fine-tune report %r", lines[-1])
        return RunFailed("the fine-tune process printed no readable report")

    async def _last_row_id(self) -> int | None:
        """The newest model-versions row id before a run, or None when the database cannot say."""
        try:
            async with self._sessions() as session:
                return await versions.last_row_id(session=session)
        except Exception:  # then the child cannot record anything either; its own error will say why
            logger.warning("could not read the model versions before a fine-tune", exc_info=True)
            return None

    async def _recorded_run(self, rows_before: int) -> RunReport | None:
        """The outcome a child that died without a report had committed, if it got that far; else None.

        The child commits its row and only then prints its report: stopped (or killed) in between, its
        promotion holds although nothing says so. One run holds the lock at a time, so a decided row added
        after ``rows_before`` is this run's. (Not one begun after this run: a clock set back breaks that.)
        """
        try:
            async with self._sessions() as session:
                run = await versions.last_run(session=session, recorded_after=rows_before)
        except Exception:  # the database may be why the child died: then it recorded nothing either
            logger.exception("could not check what the fine-tune process recorded")
            return None
        if run is None:
            return None
        logger.info("the fine-tune process ended before reporting, but had recorded %s (%s)", run.version, run.decision)
        return RunReport.from_record(run)

    async def _record_failure(self, failure: RunFailed, started: datetime, decision: str) -> None:
        try:
            async with self._sessions.begin() as session:
                await versions.add_version(
                    session=session,
                    version=new_version("gru"),
                    kind="gru",
                    checkpoint_path=None,
                    parent_version=self._live.version,
                    metrics={},
                    decision=decision,
                    reason=failure.message,
                    started_at=started,
                )
        except Exception:  # the database itself may be why the run failed
            logger.exception("could not record the failed fine-tune")

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Abandon a running fine-tune: terminate the child and wait; what it had committed stands.

        A child that ignores SIGTERM for ``grace`` seconds is killed.
        """
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                process.kill()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
