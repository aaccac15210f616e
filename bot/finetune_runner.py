"""Start fine-tune runs from the bot in a child process, one at a time, and swap in what they promote."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass

from bot.config import Settings
from bot.finetune_job import RunReport
from bot.live_model import LiveModel

logger = logging.getLogger(__name__)

# The child runs at lower CPU priority so /guess keeps its core when the machine is busy.
CHILD_NICENESS = 10


@dataclass(frozen=True)
class RunFailed:
    """The child process died or printed no report; the live model is untouched."""

    message: str


RunOutcome = RunReport | RunFailed


def child_command(*, force: bool) -> list[str]:
    """The ``nameorigin finetune`` command line the bot runs."""
    command = [sys.executable, "-m", "core.cli", "finetune", "--json", "--nice", str(CHILD_NICENESS)]
    return command + (["--force"] if force else [])


def child_environment(settings: Settings) -> dict[str, str]:
    """The bot's environment with its fine-tune settings, minus the Telegram token the child never needs."""
    environment = {key: value for key, value in os.environ.items() if key != "TELEGRAM_BOT_TOKEN"}
    environment.update(settings.environment())
    environment["OMP_NUM_THREADS"] = str(settings.finetune_threads)
    return environment


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


class FinetuneRunner:
    """Runs at most one fine-tune child at a time."""

    def __init__(self, settings: Settings, live: LiveModel) -> None:
        self._settings = settings
        self._live = live
        self._task: asyncio.Task[RunOutcome] | None = None
        self.process: asyncio.subprocess.Process | None = None  # the running child, if any

    @property
    def busy(self) -> bool:
        """Whether a run is in progress."""
        return self._task is not None and not self._task.done()

    def start(self, *, force: bool) -> asyncio.Task[RunOutcome] | None:
        """Start a run and return its task, or None when one is already running."""
        if self.busy:
            return None
        self._task = asyncio.create_task(self._run(force=force))
        return self._task

    async def _run(self, *, force: bool) -> RunOutcome:
        self.process = await asyncio.create_subprocess_exec(
            *child_command(force=force),
            env=child_environment(self._settings),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            stdout, stderr = await self.process.communicate()
        finally:
            returncode, self.process = self.process.returncode, None
        errors = stderr.decode(errors="replace").strip().splitlines()
        for line in errors:
            logger.info("fine-tune: %s", line)
        lines = stdout.decode(errors="replace").strip().splitlines()
        if returncode not in (0, 75) or not lines:  # 75: the child found another run holding the lock
            message = f"the fine-tune process {_describe_exit(returncode or 0)}"
            if errors and returncode and returncode > 0:
                message += f": {errors[-1]}"
            logger.error("%s; the live model is unchanged", message)
            return RunFailed(message)
        try:
            report = RunReport.from_json(lines[-1])
        except (ValueError, TypeError) as exc:
            logger.error("unreadable fine-tune report %r: %s", lines[-1], exc)
            return RunFailed("the fine-tune process printed no readable report")
        if report.status == "promoted":
            await self._live.sync()
        return report

    async def stop(self) -> None:
        """Terminate a running child (its run is abandoned; nothing was committed) and wait for it."""
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()
            await process.wait()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
