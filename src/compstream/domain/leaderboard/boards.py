"""Ranked boards: deterministic ordering and the published (public) shape.

Order is (value descending, id ascending): equal values rank by engineer_id
(team_id on team boards), so every process computes the same board. Ranks are
positions 1..n; ties get distinct consecutive ranks in id order. Only entries
with a non-zero value are ranked (no usage = not on the board).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Iterable

from compstream.domain.leaderboard import _codec as c
from compstream.domain.leaderboard.errors import LeaderboardError
from compstream.domain.leaderboard.totals import METRICS, Metric, Totals, metric_value


class Scope(str, Enum):
    ENGINEER = "engineer"
    TEAM = "team"


SCOPES: tuple[Scope, ...] = (Scope.ENGINEER, Scope.TEAM)


def rank_order(value: int, ident: str) -> tuple[int, str]:
    """Sort key: larger value first, then smaller id."""
    return (-value, ident)


def top_n(items: Iterable[tuple[str, Totals]], metric: Metric, n: int) -> list[tuple[str, Totals]]:
    """The first n of the items with a non-zero value, in rank order."""
    value = metric_value(metric)
    eligible = [(i, t) for (i, t) in items if value(t) > 0]
    # nsmallest == sorted(...)[:n] (stable too), without sorting all when n is small.
    return heapq.nsmallest(n, eligible, key=lambda it: (-value(it[1]), it[0]))


@dataclass(frozen=True, slots=True)
class BoardEntry:
    rank: int
    id: str  # engineer_id or team_id (real, never pseudonymized here)
    value: int
    totals: Totals
    members: int | None = None  # team boards only

    def to_dict(self) -> dict[str, Any]:
        out = {"rank": self.rank, "id": self.id, "value": self.value, "totals": self.totals.to_dict()}
        if self.members is not None:
            out["members"] = self.members
        return out

    @classmethod
    def from_dict(cls, raw: object) -> "BoardEntry":
        raw = c.obj(raw, "board entry")
        members = raw.get("members")
        return cls(
            rank=c.req_int(raw, "rank", minimum=1),
            id=c.req_str(raw, "id"),
            value=c.req_int(raw, "value"),
            totals=Totals.from_dict(raw.get("totals")),
            members=None if members is None else c.req_int(raw, "members"),
        )


@dataclass(frozen=True, slots=True)
class Board:
    window_key: str
    scope: Scope
    metric: Metric
    entries: tuple[BoardEntry, ...]
    # How many ids had a non-zero value (engineer boards: visible engineers
    # summed over partitions; team boards: teams large enough to show).
    eligible: int
    # False when the board was cut short because a partition's candidate list
    # was cut at its k (see merge.py for the guarantee).
    exact_beyond: bool

    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_key": self.window_key,
            "scope": self.scope.value,
            "metric": self.metric.value,
            "entries": [e.to_dict() for e in self.entries],
            "eligible": self.eligible,
            "exact_beyond": self.exact_beyond,
        }

    @classmethod
    def from_dict(cls, raw: object) -> "Board":
        raw = c.obj(raw, "board")
        try:
            scope, metric = Scope(raw.get("scope")), Metric(raw.get("metric"))
        except ValueError as exc:
            raise LeaderboardError(f"board: bad scope/metric in {raw.get('scope')!r}/{raw.get('metric')!r}") from exc
        return cls(
            window_key=c.req_str(raw, "window_key"),
            scope=scope,
            metric=metric,
            entries=tuple(BoardEntry.from_dict(e) for e in c.req_list(raw, "entries")),
            eligible=c.req_int(raw, "eligible"),
            exact_beyond=c.req_bool(raw, "exact_beyond"),
        )

    def to_public_dict(self, pseudonymize: Callable[[str], str] | None = None) -> dict[str, Any]:
        """The published shape; engineer ids replaced when a pseudonymizer is given.

        Team ids are never pseudonymized (teams are public org units).
        """
        out = self.to_dict()
        if pseudonymize is not None and self.scope is Scope.ENGINEER:
            for entry in out["entries"]:
                entry["id"] = pseudonymize(entry["id"])
        return out


@dataclass(frozen=True, slots=True)
class WindowBoards:
    """All four boards of one window; with final=True, the history snapshot."""

    window_key: str
    start: datetime | None
    end: datetime | None
    final: bool
    # The merge watermark that closed the window (final snapshots only).
    closed_at: datetime | None
    boards: tuple[Board, ...]
    # partition -> version of the contribution the boards were computed from.
    versions: dict[int, int]
    # 0 for the first final boards (and every provisional one); +1 for each
    # merge batch that changed the window after it was final (late usage,
    # merge.py). History keeps every revision.
    revision: int = 0

    @property
    def late_adjusted(self) -> bool:
        """Changed after being final (by late usage)."""
        return self.revision > 0

    def board(self, scope: Scope, metric: Metric) -> Board:
        for b in self.boards:
            if b.scope is scope and b.metric is metric:
                return b
        raise LeaderboardError(f"no {scope.value}/{metric.value} board for {self.window_key}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_key": self.window_key,
            "start": c.time_out(self.start),
            "end": c.time_out(self.end),
            "final": self.final,
            "closed_at": c.time_out(self.closed_at),
            "boards": [b.to_dict() for b in self.boards],
            # JSON object keys are strings.
            "versions": {str(p): v for p, v in sorted(self.versions.items())},
            "revision": self.revision,
            "late_adjusted": self.late_adjusted,
        }

    @classmethod
    def from_dict(cls, raw: object) -> "WindowBoards":
        raw = c.obj(raw, "window boards")
        versions_raw = c.obj(raw.get("versions"), "versions")
        try:
            versions = {int(p): c.req_int(versions_raw, p) for p in versions_raw}
        except ValueError as exc:
            raise LeaderboardError(f"versions: bad partition in {versions_raw!r}") from exc
        return cls(
            window_key=c.req_str(raw, "window_key"),
            start=c.opt_time(raw, "start"),
            end=c.opt_time(raw, "end"),
            final=c.req_bool(raw, "final"),
            closed_at=c.opt_time(raw, "closed_at"),
            boards=tuple(Board.from_dict(b) for b in c.req_list(raw, "boards")),
            versions=versions,
            # Absent in snapshots stored before revisions existed: the first.
            revision=c.req_int(raw, "revision") if "revision" in raw else 0,
        )

    def to_public_dict(self, pseudonymize: Callable[[str], str] | None = None) -> dict[str, Any]:
        out = self.to_dict()
        out["boards"] = [b.to_public_dict(pseudonymize) for b in self.boards]
        del out["versions"]  # internal bookkeeping, not for readers
        return out


BOARD_KINDS: tuple[tuple[Scope, Metric], ...] = tuple((s, m) for s in SCOPES for m in METRICS)
