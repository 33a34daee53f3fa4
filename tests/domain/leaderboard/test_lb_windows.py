from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compstream.domain.leaderboard import LeaderboardError, WindowKind, window_for, window_from_key, windows_for
from compstream.domain.leaderboard.windows import ALL_TIME

UTC = timezone.utc


def utc(*a):
    return datetime(*a, tzinfo=UTC)


def test_day_window_bounds_and_key():
    w = window_for(WindowKind.DAY, utc(2026, 11, 27, 23, 59, 59, 999999))
    assert w.key == "day:2026-11-27"
    assert (w.start, w.end) == (utc(2026, 11, 27), utc(2026, 11, 28))
    assert window_for(WindowKind.DAY, utc(2026, 11, 28)).key == "day:2026-11-28"  # end is exclusive


def test_timestamps_are_bucketed_in_utc_not_local_time():
    # 23:30 in New York on the 27th is 04:30 UTC on the 28th.
    ny = timezone(timedelta(hours=-5))
    ts = datetime(2026, 11, 27, 23, 30, tzinfo=ny)
    assert window_for(WindowKind.DAY, ts).key == "day:2026-11-28"
    plus_two = timezone(timedelta(hours=2))
    assert window_for(WindowKind.MONTH, datetime(2026, 12, 1, 0, 30, tzinfo=plus_two)).key == "month:2026-11"


def test_naive_timestamps_are_refused():
    with pytest.raises(LeaderboardError):
        window_for(WindowKind.DAY, datetime(2026, 11, 27))


@pytest.mark.parametrize(
    "day, key, monday",
    [
        (date(2026, 11, 27), "week:2026-W48", date(2026, 11, 23)),
        (date(2026, 12, 31), "week:2026-W53", date(2026, 12, 28)),  # 2026 has 53 ISO weeks
        (date(2027, 1, 3), "week:2026-W53", date(2026, 12, 28)),  # Sunday still in 2026-W53
        (date(2027, 1, 4), "week:2027-W01", date(2027, 1, 4)),
        (date(2024, 12, 30), "week:2025-W01", date(2024, 12, 30)),  # ISO year ahead of calendar
        (date(2021, 1, 3), "week:2020-W53", date(2020, 12, 28)),
    ],
)
def test_iso_week_boundaries(day, key, monday):
    w = window_for(WindowKind.WEEK, utc(day.year, day.month, day.day, 12))
    assert w.key == key
    assert w.start == utc(monday.year, monday.month, monday.day)
    assert w.end - w.start == timedelta(days=7)
    assert w.start.weekday() == 0


def test_week_starts_monday_midnight_utc():
    sunday_late = utc(2026, 11, 29, 23, 59, 59)
    monday = utc(2026, 11, 30)
    assert window_for(WindowKind.WEEK, sunday_late).key == "week:2026-W48"
    assert window_for(WindowKind.WEEK, monday).key == "week:2026-W49"


@pytest.mark.parametrize(
    "ts, key, end",
    [
        (utc(2026, 11, 30, 23, 59, 59), "month:2026-11", utc(2026, 12, 1)),
        (utc(2026, 12, 31, 23, 59), "month:2026-12", utc(2027, 1, 1)),
        (utc(2028, 2, 29, 12), "month:2028-02", utc(2028, 3, 1)),  # leap day
        (utc(2027, 2, 28, 23), "month:2027-02", utc(2027, 3, 1)),
    ],
)
def test_month_ends(ts, key, end):
    w = window_for(WindowKind.MONTH, ts)
    assert (w.key, w.end) == (key, end)
    assert w.start == utc(ts.year, ts.month, 1)


def test_all_time_never_closes():
    w = window_for(WindowKind.ALL_TIME, utc(2026, 1, 1))
    assert w is ALL_TIME and w.key == "all"
    assert w.closes_at(timedelta(hours=6)) is None
    assert not w.is_closed(utc(9999, 1, 1), timedelta(0))


def test_closes_at_end_plus_lateness():
    w = window_from_key("day:2026-11-27")
    assert w.closes_at(timedelta(hours=6)) == utc(2026, 11, 28, 6)
    assert not w.is_closed(utc(2026, 11, 28, 5, 59), timedelta(hours=6))
    assert w.is_closed(utc(2026, 11, 28, 6), timedelta(hours=6))
    assert not w.is_closed(None, timedelta(0))


@pytest.mark.parametrize(
    "key",
    ["", "day:2026-02-30", "week:2026-W54", "week:2025-W53", "month:2026-13", "month:0000-01", "year:2026", "ALL", 7],
)
def test_bad_keys_raise(key):
    with pytest.raises(LeaderboardError):
        window_from_key(key)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_every_window_contains_its_timestamp_and_round_trips(ts):
    for w in windows_for(ts):
        assert w.contains(ts)
        assert window_from_key(w.key) == w
