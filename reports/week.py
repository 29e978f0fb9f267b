"""ISO weeks in the configured time zone: parsing `2026-W47`, the last complete week, and a week's
window [Monday 00:00, next Monday 00:00) in local time (a DST week is 167 or 169 hours long)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


class ReportError(ValueError):
    """A report cannot be made as asked (bad week, unknown team or service); the message says
    what to do."""


@dataclass(frozen=True)
class Week:
    """One ISO week (year, number) in a time zone."""

    year: int
    number: int
    timezone: str = "UTC"

    @property
    def key(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    @property
    def monday(self) -> date:
        return date.fromisocalendar(self.year, self.number, 1)

    @property
    def since(self) -> datetime:
        return datetime.combine(self.monday, time(0), tzinfo=ZoneInfo(self.timezone))

    @property
    def until(self) -> datetime:
        return datetime.combine(
            self.monday + timedelta(days=7), time(0), tzinfo=ZoneInfo(self.timezone)
        )

    def shifted(self, weeks: int) -> Week:
        """The week `weeks` later (negative: earlier)."""
        year, number, _ = (self.monday + timedelta(weeks=weeks)).isocalendar()
        return Week(year, number, self.timezone)


def parse_week(text: str, timezone: str = "UTC") -> Week:
    """`2026-W47` as a Week; a ReportError naming the value otherwise."""
    match = WEEK.match(text.strip())
    if not match:
        raise ReportError(f"{text!r} is not an ISO week; write it like 2026-W47")
    year, number = int(match[1]), int(match[2])
    try:
        date.fromisocalendar(year, number, 1)
    except ValueError:
        raise ReportError(f"{text!r}: {year} has no ISO week {number}") from None
    return Week(year, number, timezone)


def last_complete_week(now: datetime, timezone: str = "UTC") -> Week:
    """The latest ISO week that ended at or before `now` (local): on a Monday, the week before."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    year, number, _ = (today - timedelta(days=today.weekday() + 7)).isocalendar()
    return Week(year, number, timezone)
