"""An effective-dated history of one engineer's setting (team, privacy).

Entries sort by (effective_at, event_id), never by arrival, so the answer for
any instant is the same whatever order HR events were delivered in; two
changes at the same instant resolve by event_id, arbitrarily but stably.
Re-delivered events (same event_id) are ignored, so applying is idempotent.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from compstream.domain.leaderboard.errors import LeaderboardError

V = TypeVar("V")
D = TypeVar("D")


@dataclass
class Timeline(Generic[V]):
    # (effective_at, event_id, value), sorted.
    entries: list[tuple[datetime, str, V]] = field(default_factory=list)

    def add(self, effective_at: datetime, event_id: str, value: V) -> bool:
        if effective_at.tzinfo is None:
            raise LeaderboardError("effective_at has no time zone")
        if any(e[1] == event_id for e in self.entries):
            return False
        bisect.insort(self.entries, (effective_at, event_id, value), key=lambda e: (e[0], e[1]))
        return True

    def at(self, ts: datetime, default: D) -> V | D:
        """The value in force at `ts` (changes take effect at their instant)."""
        i = bisect.bisect_right(self.entries, ts, key=lambda e: e[0])
        return self.entries[i - 1][2] if i else default

    def changes_within(self, start: datetime | None, end: datetime | None) -> list[V]:
        """Values set by changes with start < effective_at < end (None = unbounded)."""
        return [
            v
            for (t, _, v) in self.entries
            if (start is None or t > start) and (end is None or t < end)
        ]
