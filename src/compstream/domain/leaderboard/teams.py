"""Effective-dated team membership: which team an engineer was in at an instant.

Usage counts for the team the engineer belonged to when it happened. The
lookup is made when the usage is applied, so a TeamAssigned that arrives
*after* usage it should have re-attributed does not move that usage (the
partition keeps totals, not individual events, to stay bounded). HR events are
expected to arrive before the usage they govern; see the package docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from compstream.domain.events import TeamAssigned
from compstream.domain.leaderboard import _codec as c
from compstream.domain.leaderboard._timeline import Timeline
from compstream.domain.leaderboard.errors import LeaderboardError


@dataclass
class TeamTimeline:
    engineer_id: str
    _timeline: Timeline[str] = field(default_factory=Timeline)

    def apply(self, event: TeamAssigned) -> bool:
        """Record an assignment; False if it was already known (re-delivery)."""
        if event.engineer_id != self.engineer_id:
            raise LeaderboardError(
                f"TeamAssigned for {event.engineer_id!r} applied to {self.engineer_id!r}"
            )
        return self._timeline.add(event.effective_at, event.event_id, event.team_id)

    def team_at(self, ts: datetime) -> str | None:
        """Team in force at `ts`; None before the first assignment."""
        return self._timeline.at(ts, None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engineer_id": self.engineer_id,
            "assignments": [
                {"effective_at": c.time_out(t), "event_id": eid, "team_id": team}
                for (t, eid, team) in self._timeline.entries
            ],
        }

    @classmethod
    def from_dict(cls, raw: object) -> "TeamTimeline":
        raw = c.obj(raw, "team timeline")
        out = cls(c.req_str(raw, "engineer_id"))
        for item in c.req_list(raw, "assignments"):
            item = c.obj(item, "assignment")
            out._timeline.add(c.req_time(item, "effective_at"), c.req_str(item, "event_id"), c.req_str(item, "team_id"))
        return out
