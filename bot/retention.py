"""GUESS_RETENTION_DAYS: an hourly job deletes the guesses no one gave a verdict on once they are that old.

Guesses with a verdict stay: they are what fine-tuning learns from, until their users ``/forget`` them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import DBAPIError
from telegram.ext import ContextTypes

from bot.db.engine import first_line
from bot.service import GuessService

logger = logging.getLogger(__name__)

PURGE_JOB_NAME = "purge-guesses"
PURGE_INTERVAL_S = 3600.0
PURGE_FIRST_S = 60.0  # soon after a start, so a bot that was down for a while catches up at once


class GuessRetention:
    """The scheduled deletion of guesses older than ``days`` that carry no verdict."""

    def __init__(self, service: GuessService, days: int) -> None:
        self.service = service
        self.days = days

    async def purge(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Delete what is past its time; a failure is logged and the next run tries again."""
        before = datetime.now(UTC) - timedelta(days=self.days)
        try:
            deleted = await self.service.purge_unrated_guesses(before=before)
        except DBAPIError as exc:  # a locked, full or unreachable database: the next hour may do better
            logger.warning("could not delete old guesses, will try again in 1 hour: %s", first_line(exc.orig))
            return
        if deleted:
            logger.info(
                "deleted %d guess%s older than %d days with no verdict",
                deleted,
                "" if deleted == 1 else "es",
                self.days,
            )
