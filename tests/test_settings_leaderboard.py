"""Leaderboard settings from the environment: closed-board retention."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from compstream.config import Settings
from compstream.domain.events import Usage
from compstream.domain.leaderboard import LeaderboardConfig, MergeState, PartitionState
from compstream.domain.leaderboard.config import DEFAULT_RETENTION

UTC = timezone.utc


def test_default_retention_is_the_domain_default(monkeypatch):
    monkeypatch.delenv("COMPSTREAM_LEADERBOARD_RETENTION_DAYS", raising=False)
    assert timedelta(days=Settings.from_env().leaderboard_retention_days) == DEFAULT_RETENTION


@pytest.mark.parametrize("raw, days", [("90", 90), (" 0 ", 0)])
def test_retention_from_the_environment(monkeypatch, raw, days):
    monkeypatch.setenv("COMPSTREAM_LEADERBOARD_RETENTION_DAYS", raw)
    assert Settings.from_env().leaderboard_retention_days == days


@pytest.mark.parametrize("raw, message", [("-1", ">= 0"), ("35d", "whole number"), ("1.5", "whole number")])
def test_bad_retention_is_refused(monkeypatch, raw, message):
    monkeypatch.setenv("COMPSTREAM_LEADERBOARD_RETENTION_DAYS", raw)
    with pytest.raises(ValueError, match=message):
        Settings.from_env()


def test_the_setting_decides_how_long_a_closed_day_board_is_served(monkeypatch):
    """What the worker does with it once wired: LeaderboardConfig(retention=days)."""
    monkeypatch.setenv("COMPSTREAM_LEADERBOARD_RETENTION_DAYS", "3")
    settings = Settings.from_env()
    config = LeaderboardConfig(k=5, lateness=timedelta(hours=1),
                               retention=timedelta(days=settings.leaderboard_retention_days))
    day = datetime(2026, 11, 2, 12, tzinfo=UTC)
    state, merge = PartitionState(0, config), MergeState(config)
    state.apply_usage(Usage("u1", "a", "p", "m", day, 10, 0, 0, 0, 0))
    for msg in state.drain():
        merge.apply(msg)
    closes = datetime(2026, 11, 3, 1, tzinfo=UTC)  # day end + lateness

    def advance(watermark):
        for msg in state.advance_watermark(watermark):
            merge.apply_message(msg)
        merge.close(merge.safe_watermark([0]))

    for watermark in (closes, closes + timedelta(days=3) - timedelta(microseconds=1)):
        advance(watermark)
        assert "day:2026-11-02" in merge.closed and merge.boards("day:2026-11-02").final
    advance(closes + timedelta(days=3))
    assert "day:2026-11-02" not in merge.closed
