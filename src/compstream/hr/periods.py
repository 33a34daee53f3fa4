"""Allocation periods: UTC calendar months and quarters, as day ranges.

A period is [start, end) in whole UTC days; `label` is `YYYY-MM` or `YYYY-Qn`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class PeriodError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    start: date
    end: date  # exclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end


def _next_month(year: int, month: int) -> date:
    return date(year + (month == 12), month % 12 + 1, 1)


def month(year: int, month_no: int) -> Period:
    return Period(f"{year:04d}-{month_no:02d}", date(year, month_no, 1), _next_month(year, month_no))


def quarter_of(period: Period) -> Period:
    """The calendar quarter containing the month `period`."""
    q = (period.start.month - 1) // 3
    start = date(period.start.year, 3 * q + 1, 1)
    return Period(f"{start.year:04d}-Q{q + 1}", start, _next_month(start.year, 3 * q + 3))


def previous(period: Period) -> Period:
    """The period of the same length just before (month before month, quarter before quarter)."""
    before = date.fromordinal(period.start.toordinal() - 1)
    prev_month = month(before.year, before.month)
    return quarter_of(prev_month) if "Q" in period.label else prev_month


def parse_month(text: str) -> Period:
    m = _MONTH.match(text.strip())
    if m is None or not 1 <= int(m.group(2)) <= 12 or not 2000 <= int(m.group(1)) <= 2999:
        raise PeriodError(f"period must be YYYY-MM (a month from 2000 on), got {text!r}")
    return month(int(m.group(1)), int(m.group(2)))


def of_kind(kind: str, run_month: Period) -> Period:
    """The period of a rule (`month` or `quarter`) that contains the run month."""
    return run_month if kind == "month" else quarter_of(run_month)


def day_start(day: date) -> datetime:
    """A UTC day as the instant it begins (event times are instants)."""
    return datetime.combine(day, time(0), tzinfo=timezone.utc)
