"""Leaderboards: pure domain (no I/O, no clock) for two-stage ranking.

Flow: usage/HR (partitioned by engineer) -> PartitionState per source partition
-> CandidateMessage / WatermarkMessage on a single-partition topic -> MergeState
-> WindowBoards (provisional while open, final snapshot once closed; late
usage within retention revises a final snapshot: `revision`, `late_adjusted`).

Windows: UTC day, ISO week, calendar month (by event time) and all-time;
see windows.py. Rankings by tokens (domain/tokens.py: input, which already
includes cache reads and writes, plus output: cache counted once) and by spend
(integer nano-dollars), per engineer and per team.

Documented limits:
- Team attribution uses the membership known when usage is applied; a
  TeamAssigned arriving after usage it covers does not re-attribute it.
- Usage events are assumed de-duplicated upstream (ledger); each one adds.
- An engineer must stay in one source partition (fixed partition count).
"""

from compstream.domain.leaderboard.boards import Board, BoardEntry, Scope, WindowBoards
from compstream.domain.leaderboard.config import LeaderboardConfig
from compstream.domain.leaderboard.errors import LeaderboardError
from compstream.domain.leaderboard.merge import MergeState, merge_boards
from compstream.domain.leaderboard.messages import (
    CandidateMessage,
    EngineerEntry,
    TeamPartial,
    WatermarkMessage,
    message_from_dict,
)
from compstream.domain.leaderboard.partition_state import PartitionState, PartitionWindow, UsageResult
from compstream.domain.leaderboard.privacy import PrivacyTimeline, Pseudonymizer, team_visible
from compstream.domain.leaderboard.teams import TeamTimeline
from compstream.domain.leaderboard.totals import Metric, Totals
from compstream.domain.leaderboard.windows import Window, WindowKind, window_for, window_from_key, windows_for

__all__ = [
    "Board",
    "BoardEntry",
    "CandidateMessage",
    "EngineerEntry",
    "LeaderboardConfig",
    "LeaderboardError",
    "MergeState",
    "Metric",
    "PartitionState",
    "PartitionWindow",
    "PrivacyTimeline",
    "Pseudonymizer",
    "Scope",
    "TeamPartial",
    "TeamTimeline",
    "Totals",
    "UsageResult",
    "WatermarkMessage",
    "Window",
    "WindowBoards",
    "WindowKind",
    "merge_boards",
    "message_from_dict",
    "team_visible",
    "window_for",
    "window_from_key",
    "windows_for",
]
