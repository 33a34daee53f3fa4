"""Messages on the single-partition candidates topic (partition stage -> merge).

Idempotency contract: a CandidateMessage is the *complete* current contribution
of one source partition to one window. The merge stage stores it under
(window_key, partition) and REPLACES the previous one, never adds. `version`
grows with every change the partition makes to that window, so a duplicate
(same version) or a stale replay (lower version) is ignored: re-delivery cannot
double count or roll a window back.

A WatermarkMessage promises that the partition has already sent the final
CandidateMessage of every window closing at or before `watermark`. Late usage
for a window already closed (within retention) makes the partition send a new
final CandidateMessage for it, again complete and with a higher version: the
merge re-ranks the closed window from it (a revision, see merge.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from compstream.domain.leaderboard import _codec as c
from compstream.domain.leaderboard.errors import LeaderboardError
from compstream.domain.leaderboard.totals import Metric, Totals
from compstream.domain.leaderboard.windows import window_from_key

CANDIDATES_TYPE = "leaderboard_candidates"
WATERMARK_TYPE = "leaderboard_watermark"


@dataclass(frozen=True, slots=True)
class EngineerEntry:
    engineer_id: str
    totals: Totals

    def to_dict(self) -> dict[str, Any]:
        return {"engineer_id": self.engineer_id, "totals": self.totals.to_dict()}

    @classmethod
    def from_dict(cls, raw: object) -> "EngineerEntry":
        raw = c.obj(raw, "engineer entry")
        return cls(c.req_str(raw, "engineer_id"), Totals.from_dict(raw.get("totals")))


@dataclass(frozen=True, slots=True)
class TeamPartial:
    """One partition's share of a team's window totals.

    `members` counts the partition's distinct engineers with activity for the
    team in the window; partitions hold disjoint engineers, so the merge may
    add the counts to get the team's distinct contributors.
    """

    team_id: str
    totals: Totals
    members: int

    def to_dict(self) -> dict[str, Any]:
        return {"team_id": self.team_id, "totals": self.totals.to_dict(), "members": self.members}

    @classmethod
    def from_dict(cls, raw: object) -> "TeamPartial":
        raw = c.obj(raw, "team partial")
        return cls(c.req_str(raw, "team_id"), Totals.from_dict(raw.get("totals")), c.req_int(raw, "members"))


@dataclass(frozen=True, slots=True)
class CandidateMessage:
    partition: int
    window_key: str
    version: int
    # True on the message sent as the window closes in the partition.
    final: bool
    # Per-partition candidate bound; per metric the partition sent its top-k
    # visible engineers (the union of both metrics' lists is `engineers`).
    k: int
    # Visible engineers with a non-zero value, per metric, in this partition.
    # eligible[m] > k means the partition's list for m was cut at k.
    eligible: dict[Metric, int]
    engineers: tuple[EngineerEntry, ...]
    # Every team with activity in the partition's window (not bounded by k:
    # team sums must be complete to be exact, and teams are few).
    teams: tuple[TeamPartial, ...]
    watermark: datetime | None

    def same_contribution(self, other: "CandidateMessage") -> bool:
        """Same ranking input (version and watermark aside): a re-sent final
        of a closed window that changes nothing is not a revision."""
        return (self.window_key, self.partition, self.k, self.eligible, self.engineers, self.teams) == (
            other.window_key, other.partition, other.k, other.eligible, other.engineers, other.teams)

    def truncated(self, metric: Metric) -> bool:
        return self.eligible.get(metric, 0) > self.k

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": CANDIDATES_TYPE,
            "partition": self.partition,
            "window_key": self.window_key,
            "version": self.version,
            "final": self.final,
            "k": self.k,
            "eligible": {m.value: n for m, n in sorted(self.eligible.items())},
            "engineers": [e.to_dict() for e in self.engineers],
            "teams": [t.to_dict() for t in self.teams],
            "watermark": c.time_out(self.watermark),
        }

    @classmethod
    def from_dict(cls, raw: object) -> "CandidateMessage":
        raw = c.obj(raw, "candidate message")
        if raw.get("type") != CANDIDATES_TYPE:
            raise LeaderboardError(f"type: expected {CANDIDATES_TYPE!r}, got {raw.get('type')!r}")
        eligible_raw = c.obj(raw.get("eligible"), "eligible")
        try:
            eligible = {Metric(name): n for name, n in eligible_raw.items()}
        except ValueError as exc:
            raise LeaderboardError(f"eligible: unknown metric in {eligible_raw!r}") from exc
        for m in eligible:
            c.req_int(eligible_raw, m.value)
        window_key = c.req_str(raw, "window_key")
        window_from_key(window_key)  # validate before it reaches any state
        return cls(
            partition=c.req_int(raw, "partition"),
            window_key=window_key,
            version=c.req_int(raw, "version", minimum=1),
            final=c.req_bool(raw, "final"),
            k=c.req_int(raw, "k", minimum=1),
            eligible=eligible,
            engineers=tuple(EngineerEntry.from_dict(e) for e in c.req_list(raw, "engineers")),
            teams=tuple(TeamPartial.from_dict(t) for t in c.req_list(raw, "teams")),
            watermark=c.opt_time(raw, "watermark"),
        )


@dataclass(frozen=True, slots=True)
class WatermarkMessage:
    partition: int
    watermark: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"type": WATERMARK_TYPE, "partition": self.partition, "watermark": c.time_out(self.watermark)}

    @classmethod
    def from_dict(cls, raw: object) -> "WatermarkMessage":
        raw = c.obj(raw, "watermark message")
        if raw.get("type") != WATERMARK_TYPE:
            raise LeaderboardError(f"type: expected {WATERMARK_TYPE!r}, got {raw.get('type')!r}")
        return cls(c.req_int(raw, "partition"), c.req_time(raw, "watermark"))


def message_from_dict(raw: object) -> CandidateMessage | WatermarkMessage:
    """Decode either message by its `type` field."""
    kind = c.obj(raw, "message").get("type")
    if kind == CANDIDATES_TYPE:
        return CandidateMessage.from_dict(raw)
    if kind == WATERMARK_TYPE:
        return WatermarkMessage.from_dict(raw)
    raise LeaderboardError(f"type: unknown leaderboard message type {kind!r}")
