"""Crontab expressions with crontab's meaning, for APScheduler.

APScheduler's ``CronTrigger.from_crontab`` numbers weekdays from Monday (0 = Monday), while crontab
numbers them from Sunday (0 or 7 = Sunday): taken as is, ``0 3 * * 1-5`` would run Tuesday to
Saturday. The weekday field is therefore rewritten as day names, which both read the same way.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

from apscheduler.triggers.cron import CronTrigger

CRONTAB_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab's numbering: index = number
_DAY = r"[0-9]+|[a-z]{3}"
_PART = re.compile(rf"(?P<start>\*|{_DAY})(?:-(?P<end>{_DAY}))?(?:/(?P<step>[1-9][0-9]*))?")


def crontab_trigger(expression: str, timezone: tzinfo) -> CronTrigger:
    """A trigger for the five-field crontab ``expression``; raises ``ValueError`` naming what is wrong."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    day_of_month, weekday = fields[2], fields[4]
    if not day_of_month.startswith(("*", "?")) and not weekday.startswith(("*", "?")):
        # crontab runs when either matches, APScheduler only when both do: refuse rather than guess.
        # (A field starting with "*", such as "*/2", makes crontab require both too, as APScheduler does.)
        raise ValueError("may restrict the day of the month or the weekday, not both (crontab would run on either)")
    if weekday not in ("*", "?"):
        fields[4] = ",".join(CRONTAB_DAYS[day] for day in sorted(crontab_weekdays(weekday)))
    trigger = CronTrigger.from_crontab(" ".join(fields), timezone=timezone)
    if trigger.get_next_fire_time(None, datetime.now(timezone)) is None:  # e.g. "0 3 31 2 *": February 31st
        raise ValueError(f"{expression!r} names a date that never comes, so it would never run")
    return trigger


def crontab_weekdays(field: str) -> set[int]:
    """The weekdays (0 = Sunday) a crontab weekday field names: lists, ranges, steps, numbers or names."""
    days: set[int] = set()
    for part in field.lower().split(","):
        match = _PART.fullmatch(part)
        if match is None:
            raise ValueError(f"weekday {part!r} is not crontab syntax (0-7 or sun-sat, ranges, lists, steps)")
        start, end, step = match["start"], match["end"], int(match["step"] or 1)
        if start == "*":
            if end is not None:
                raise ValueError(f"weekday {part!r}: '*' cannot start a range")
            first, last = 0, 6
        else:
            first = _day_number(start)
            # "5/2" means from Friday to the end of the week, as cronie reads it.
            last = _day_number(end) if end is not None else (7 if match["step"] else first)
        if first > last:
            raise ValueError(f"weekday range {part!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return days


def _day_number(text: str) -> int:
    if text.isdigit():
        if int(text) > 7:
            raise ValueError(f"weekday {text} is out of range: use 0-7 (0 and 7 are Sunday)")
        return int(text)
    if text not in CRONTAB_DAYS:
        raise ValueError(f"unknown weekday {text!r}")
    return CRONTAB_DAYS.index(text)
