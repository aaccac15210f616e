"""FINETUNE_CRON keeps crontab's meaning, weekdays included."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from telegram.ext import ApplicationBuilder, ContextTypes

from bot.admin import AdminHandlers
from bot.app import schedule_jobs
from bot.config import Settings, SettingsError, load_settings
from bot.cron import crontab_trigger, crontab_weekdays
from bot.retention import GuessRetention

MONDAY = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def fire_days(expression: str, count: int = 7) -> list[str]:
    """Weekday names of the next ``count`` runs after a Monday noon."""
    trigger = crontab_trigger(expression, UTC)
    days, previous, now = [], None, MONDAY
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        days.append(fire.strftime("%a"))
        previous, now = fire, fire + timedelta(seconds=1)
    return days


@pytest.mark.parametrize(
    ("expression", "days"),
    [
        ("0 3 * * 0", ["Sun"] * 3),
        ("0 3 * * 7", ["Sun"] * 3),
        ("0 3 * * SUN", ["Sun"] * 3),
        ("0 3 * * 1-5", ["Tue", "Wed", "Thu", "Fri", "Mon"]),
        ("0 3 * * mon-fri", ["Tue", "Wed", "Thu", "Fri", "Mon"]),
        ("0 3 * * 6,0", ["Sat", "Sun", "Sat"]),
        ("0 3 * * */2", ["Tue", "Thu", "Sat", "Sun", "Tue"]),
        ("0 3 * * 5/1", ["Fri", "Sat", "Sun", "Fri"]),
        ("0 3 * * 01-05", ["Tue", "Wed", "Thu", "Fri", "Mon"]),
        ("0 3 */2 * 1", ["Mon", "Mon"]),  # a "*" field: crontab requires both, like APScheduler
        ("0 3 * * *", ["Tue", "Wed", "Thu"]),
    ],
)
def test_weekdays_count_from_sunday_as_in_crontab(expression: str, days: list[str]) -> None:
    assert fire_days(expression, len(days)) == days


def test_weekday_field_expands_to_crontab_days() -> None:
    assert crontab_weekdays("0-7") == set(range(7))
    assert crontab_weekdays("1-5/2,sun") == {0, 1, 3, 5}


@pytest.mark.parametrize(
    "expression",
    ["0 3 * *", "0 3 1 * 1", "0 3 * * 8", "0 3 * * 5-1", "0 3 * * fun", "0 3 * * *-2", "61 3 * * *", "0 3 31 2 *"],
)
def test_bad_schedules_fail_at_start_up_with_one_line(expression: str) -> None:
    with pytest.raises(SettingsError, match="^invalid configuration: FINETUNE_CRON [^\n]+$"):
        load_settings(Settings, telegram_bot_token="1:x", finetune_cron=expression)


def test_a_schedule_on_a_date_that_never_comes_is_refused_and_leap_days_are_not() -> None:
    with pytest.raises(SettingsError, match="'0 3 30 2 \\*' names a date that never comes"):
        load_settings(Settings, telegram_bot_token="1:x", finetune_cron="0 3 30 2 *")
    assert load_settings(Settings, telegram_bot_token="1:x", finetune_cron="0 3 29 2 *").finetune_cron == "0 3 29 2 *"


class ScheduledRuns:
    """Stands in for the admin handlers: records that the scheduled fine-tune started."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def scheduled_finetune(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.started.set()

    async def refresh_model(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        pass


async def test_a_scheduled_fine_tune_the_scheduler_reaches_late_still_runs() -> None:
    # At 03:00 the event loop was busy for a moment, or the clock stepped forward: the scheduler gets to the run
    # a minute late. APScheduler's default grace is 1 s: the run was dropped, and the next came a day (a week) later.
    settings = load_settings(Settings, telegram_bot_token="1:x", guess_retention_days=0)
    application = ApplicationBuilder().token("1:x").build()
    runs = ScheduledRuns()
    schedule_jobs(application, settings, cast(AdminHandlers, runs), cast(GuessRetention, None))
    job_queue = application.job_queue
    assert job_queue is not None
    await job_queue.start()
    try:
        [job] = job_queue.get_jobs_by_name("finetune")
        job.job.modify(next_run_time=datetime.now(UTC) - timedelta(minutes=1))
        await asyncio.wait_for(runs.started.wait(), timeout=5)
    finally:
        await job_queue.stop()
