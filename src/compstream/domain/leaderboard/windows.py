"""Tumbling event-time windows: UTC day, ISO week, calendar month, plus all-time.

A window is identified by a key string that is stable across processes and
sorts sensibly within a kind: `day:2026-11-27`, `week:2026-W48`,
`month:2026-11`, `all`. Start is inclusive, end exclusive, both UTC midnight.
The all-time window has neither and never closes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from functools import lru_cache

from compstream.domain.leaderboard.errors import LeaderboardError


class WindowKind(str, Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    ALL_TIME = "all"


ALL_KINDS: tuple[WindowKind, ...] = (
    WindowKind.DAY,
    WindowKind.WEEK,
    WindowKind.MONTH,
    WindowKind.ALL_TIME,
)
ALL_TIME_KEY = "all"

_DAY_RE = re.compile(r"^day:(\d{4})-(\d{2})-(\d{2})$")
_WEEK_RE = re.compile(r"^week:(\d{4})-W(\d{2})$")
_MONTH_RE = re.compile(r"^month:(\d{4})-(\d{2})$")


@dataclass(frozen=True, slots=True)
class Window:
    kind: WindowKind
    key: str
    start: datetime | None  # inclusive; None only for all-time
    end: datetime | None  # exclusive; None only for all-time

    def contains(self, ts: datetime) -> bool:
        if self.start is None or self.end is None:
            return True
        return self.start <= ts < self.end

    def closes_at(self, lateness: timedelta) -> datetime | None:
        """The watermark at which the window becomes final; None = never."""
        if self.end is None:
            return None
        return self.end + lateness

    def is_closed(self, watermark: datetime | None, lateness: timedelta) -> bool:
        closes = self.closes_at(lateness)
        return closes is not None and watermark is not None and watermark >= closes

    def past_retention(self, watermark: datetime | None, lateness: timedelta, retention: timedelta) -> bool:
        """Closed for `retention` or longer at `watermark`: no late adjustment
        any more (and the merge no longer serves the final board)."""
        closes = self.closes_at(lateness)
        return closes is not None and watermark is not None and watermark >= closes + retention


def _utc(ts: datetime) -> datetime:
    # A naive datetime has no defined window; guessing a zone would silently
    # shift usage across day boundaries.
    if not isinstance(ts, datetime) or ts.tzinfo is None:
        raise LeaderboardError(f"expected an aware datetime, got {ts!r}")
    return ts.astimezone(timezone.utc)


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def _day(d: date) -> Window:
    start = _midnight(d)
    # date.max has no following midnight; such a timestamp is a bug upstream.
    if d == date.max:
        raise LeaderboardError("day window past the end of the calendar")
    return Window(WindowKind.DAY, f"day:{d.isoformat()}", start, start + timedelta(days=1))


def _week(iso_year: int, iso_week: int) -> Window:
    # Keyed by ISO year, which differs from the calendar year around New Year
    # (2027-01-01 is in 2026-W53), so the key never splits a week in two.
    try:
        monday = date.fromisocalendar(iso_year, iso_week, 1)
    except ValueError as exc:
        raise LeaderboardError(f"no ISO week {iso_year}-W{iso_week:02d}") from exc
    start = _midnight(monday)
    return Window(WindowKind.WEEK, f"week:{iso_year:04d}-W{iso_week:02d}", start, start + timedelta(days=7))


def _month(year: int, month: int) -> Window:
    if not 1 <= month <= 12:
        raise LeaderboardError(f"no month {year}-{month:02d}")
    try:
        start = datetime(year, month, 1, tzinfo=timezone.utc)
        end = datetime(year + 1, 1, 1, tzinfo=timezone.utc) if month == 12 else datetime(
            year, month + 1, 1, tzinfo=timezone.utc
        )
    except (ValueError, OverflowError) as exc:
        raise LeaderboardError(f"no month {year}-{month:02d}") from exc
    return Window(WindowKind.MONTH, f"month:{year:04d}-{month:02d}", start, end)


ALL_TIME = Window(WindowKind.ALL_TIME, ALL_TIME_KEY, None, None)


def window_for(kind: WindowKind, ts: datetime) -> Window:
    ts = _utc(ts)
    if kind is WindowKind.DAY:
        return _day(ts.date())
    if kind is WindowKind.WEEK:
        iso = ts.date().isocalendar()
        return _week(iso.year, iso.week)
    if kind is WindowKind.MONTH:
        return _month(ts.year, ts.month)
    if kind is WindowKind.ALL_TIME:
        return ALL_TIME
    raise LeaderboardError(f"unknown window kind {kind!r}")


def windows_for(ts: datetime, kinds: tuple[WindowKind, ...] = ALL_KINDS) -> tuple[Window, ...]:
    """Every window of the given kinds that contains `ts` (one per kind)."""
    # Windows depend only on the UTC date; cached because every usage event asks.
    return _windows_on(_utc(ts).date(), tuple(kinds))


@lru_cache(maxsize=4096)
def _windows_on(d: date, kinds: tuple[WindowKind, ...]) -> tuple[Window, ...]:
    noon = datetime(d.year, d.month, d.day, 12, tzinfo=timezone.utc)
    return tuple(window_for(kind, noon) for kind in kinds)


def window_from_key(key: str) -> Window:
    """Inverse of `Window.key`. Raises LeaderboardError on anything else."""
    if not isinstance(key, str):
        raise LeaderboardError(f"window key must be a string, got {key!r}")
    return _parse_key(key)  # cached: the stages parse every open key each batch


@lru_cache(maxsize=4096)
def _parse_key(key: str) -> Window:
    if key == ALL_TIME_KEY:
        return ALL_TIME
    if m := _DAY_RE.match(key):
        try:
            return _day(date(int(m[1]), int(m[2]), int(m[3])))
        except ValueError as exc:
            raise LeaderboardError(f"bad day window key {key!r}") from exc
    if m := _WEEK_RE.match(key):
        return _week(int(m[1]), int(m[2]))
    if m := _MONTH_RE.match(key):
        return _month(int(m[1]), int(m[2]))
    raise LeaderboardError(f"unknown window key {key!r}")
