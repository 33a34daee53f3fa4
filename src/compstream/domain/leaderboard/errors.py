"""The one exception type the leaderboard domain raises on bad input or state."""

from __future__ import annotations


class LeaderboardError(ValueError):
    """Malformed message/state, misconfiguration, or an impossible request."""
