"""Report periods: a UTC month ('2026-10') or a UTC quarter ('2026-Q4')."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-[Qq]([1-4])$")


class ReportError(RuntimeError):
    """A report that cannot be produced; the message says why."""


def _month_start(year: int, month: int) -> datetime:
    # month may be 13 (= January of the next year) for exclusive ends.
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Period:
    label: str
    start: datetime  # inclusive
    end: datetime  # exclusive: the first instant after the period
    months: tuple[str, ...]  # the 'YYYY-MM' months it covers (digests are monthly)

    @property
    def is_month(self) -> bool:
        return len(self.months) == 1


def parse_period(text: str, *, allow_quarter: bool = True) -> Period:
    """'YYYY-MM' or (if allowed) 'YYYY-Qn' -> Period. Raises ReportError."""
    text = (text or "").strip()
    match = _MONTH.match(text)
    if match:
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12:
            raise ReportError(f"period {text!r}: month must be 01..12")
        return Period(text, _month_start(year, month), _month_start(year, month + 1), (text,))
    match = _QUARTER.match(text)
    if match and allow_quarter:
        year, quarter = int(match.group(1)), int(match.group(2))
        first = 3 * (quarter - 1) + 1
        months = tuple(f"{year:04d}-{m:02d}" for m in range(first, first + 3))
        return Period(f"{year:04d}-Q{quarter}", _month_start(year, first), _month_start(year, first + 3), months)
    expected = "YYYY-MM or YYYY-Qn" if allow_quarter else "YYYY-MM"
    raise ReportError(f"period must be {expected}, got {text!r}")
