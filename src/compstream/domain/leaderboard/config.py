"""Leaderboard knobs shared by the partition and merge stages (must agree)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from compstream.domain.leaderboard.errors import LeaderboardError
from compstream.domain.leaderboard.privacy import DEFAULT_MIN_TEAM_SIZE
from compstream.domain.leaderboard.windows import ALL_KINDS, WindowKind

DEFAULT_K = 100
DEFAULT_LATENESS = timedelta(hours=6)
# Closed boards stay queryable in the merge state this long after closing, and
# late usage for them is still counted as a late adjustment (a new revision)
# until then; history (ClickHouse) keeps every revision for good. Deployments
# set it with COMPSTREAM_LEADERBOARD_RETENTION_DAYS (Settings.leaderboard_retention_days).
DEFAULT_RETENTION = timedelta(days=35)


@dataclass(frozen=True)
class LeaderboardConfig:
    k: int = DEFAULT_K
    lateness: timedelta = DEFAULT_LATENESS
    min_team_size: int = DEFAULT_MIN_TEAM_SIZE
    kinds: tuple[WindowKind, ...] = ALL_KINDS
    retention: timedelta = DEFAULT_RETENTION

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise LeaderboardError(f"k must be a positive integer, got {self.k!r}")
        if not isinstance(self.lateness, timedelta) or self.lateness < timedelta(0):
            raise LeaderboardError(f"lateness must be a non-negative timedelta, got {self.lateness!r}")
        if not isinstance(self.retention, timedelta) or self.retention < timedelta(0):
            raise LeaderboardError(f"retention must be a non-negative timedelta, got {self.retention!r}")
        if isinstance(self.min_team_size, bool) or not isinstance(self.min_team_size, int) or self.min_team_size < 1:
            raise LeaderboardError(f"min_team_size must be a positive integer, got {self.min_team_size!r}")
        if not self.kinds or len(set(self.kinds)) != len(self.kinds) or not all(
            isinstance(k, WindowKind) for k in self.kinds
        ):
            raise LeaderboardError(f"kinds must be distinct WindowKinds, got {self.kinds!r}")
