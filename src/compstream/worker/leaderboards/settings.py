"""Leaderboard settings from the worker's Settings, for every engine."""

from __future__ import annotations

from datetime import timedelta

from compstream.config import Settings
from compstream.domain.leaderboard import LeaderboardConfig, Pseudonymizer


def leaderboard_config(settings: Settings) -> LeaderboardConfig:
    return LeaderboardConfig(k=settings.leaderboard_k, lateness=timedelta(seconds=settings.lateness_s),
                             min_team_size=settings.leaderboard_min_team,
                             retention=timedelta(days=settings.leaderboard_retention_days))


def pseudonymizer(settings: Settings) -> Pseudonymizer | None:
    """None when pseudonyms are off; raises if on without a usable secret."""
    if not settings.leaderboard_pseudonyms:
        return None
    return Pseudonymizer(settings.leaderboard_secret)  # LeaderboardError if < 16 bytes
