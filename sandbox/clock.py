"""Working time for generated people: quiet nights, weekends and a holiday week in a team's zone."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY_START = time(9, 0)
DAY_END = time(18, 0)
WORK_SECONDS = 9 * 3600


def ms(value: datetime) -> datetime:
    """`value` truncated to whole milliseconds, as GitLab reports times."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class WorkClock:
    """Maps work time to instants for one team: Mon-Fri 09:00-18:00 local, minus a holiday week."""

    def __init__(self, timezone: str, holiday: date | None = None) -> None:
        self.zone = ZoneInfo(timezone)
        self.holiday = holiday  # Monday of a week nobody works

    def is_workday(self, day: date) -> bool:
        """True for a weekday outside the holiday week."""
        if day.weekday() >= 5:
            return False
        return not (self.holiday and self.holiday <= day < self.holiday + timedelta(days=7))

    def workdays(self, start: datetime, end: datetime) -> list[date]:
        """Local working days from `start` to `end`."""
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        days = []
        while day <= last:
            if self.is_workday(day):
                days.append(day)
            day += timedelta(days=1)
        return days

    def at(self, day: date, seconds_into_day: float) -> datetime:
        """The UTC instant `seconds_into_day` after 09:00 local on `day`."""
        local = datetime.combine(day, DAY_START, tzinfo=self.zone) + timedelta(
            seconds=seconds_into_day
        )
        return ms(local.astimezone(UTC))

    def random_time(self, rng: random.Random, day: date) -> datetime:
        """A random instant within the working hours of `day`."""
        return self.at(day, rng.uniform(0, WORK_SECONDS))

    def snap(self, instant: datetime) -> datetime:
        """`instant` if it falls in working time, else the start of the next working period."""
        local = instant.astimezone(self.zone)
        day = local.date()
        if self.is_workday(day) and DAY_START <= local.time() < DAY_END:
            return instant
        if self.is_workday(day) and local.time() < DAY_START:
            return self.at(day, 0)
        day += timedelta(days=1)
        while not self.is_workday(day):
            day += timedelta(days=1)
        return self.at(day, 0)

    def add(self, instant: datetime, work_seconds: float) -> datetime:
        """`instant` moved forward by `work_seconds` of working time (nights and weekends skipped)."""
        current = self.snap(instant)
        remaining = work_seconds
        while True:
            local = current.astimezone(self.zone)
            end_of_day = datetime.combine(local.date(), DAY_END, tzinfo=self.zone)
            left_today = (end_of_day - local).total_seconds()
            if remaining <= left_today:
                return ms(current + timedelta(seconds=remaining))
            remaining -= left_today
            current = self.snap(end_of_day.astimezone(UTC))
