"""Merge stage (single partition): global boards from per-partition candidates.

Per window it keeps the latest CandidateMessage of each source partition
(replace, never add: see messages.py), and ranks from those.

Exactness guarantee for engineer boards. Each engineer lives in exactly one
source partition, and partitions rank with the same total order as the merge,
so any engineer in the global top-n is in its partition's top-n. Hence the
merged board is exact for ranks 1..n as long as n <= k of every partition whose
list was cut (eligible > k). The merge computes that bound per board and never
publishes past it: `Board.entries` holds min(config.k, exact bound) ranks and
`exact_beyond` is False if the bound, not the data, stopped the board. With
equal k on both stages (the normal configuration) the published top-k is always
exact. (Without the cut-off, ranks past a partition's k could silently skip an
engineer; tests/domain/leaderboard show the case.)

Team boards are exact without a bound: partitions forward every team's partial
sums, and the merge adds them.

Windows close when the caller's watermark passes end + lateness. To be sure all
partitions' final messages are in, pass `safe_watermark(partitions)`: the
minimum of the watermarks the source partitions reported, each of which they
send only after their final candidates. Closed boards are kept for
`retention`, then dropped.

Late adjustments. A closed window keeps the final message of every partition
(`closed_messages`). A new *final* message for it within retention (a
partition counted late usage, partition_state.py) replaces that partition's
message like any other; at the end of the batch `revise()` re-ranks each
window so changed into a new final snapshot with `revision` + 1
(`late_adjusted`). One revision per batch, however many partitions or
messages touched the window; a message that changes no ranking input
(a re-send after a restart) is no revision. A non-final message for a closed
window comes from a replica that never saw the close and is ignored, as is
anything for a window past retention, or for one closed before its
contributions were kept (state written before late adjustments existed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from compstream.domain.leaderboard import _codec as c
from compstream.domain.leaderboard.boards import Board, BoardEntry, Scope, WindowBoards, top_n
from compstream.domain.leaderboard.config import LeaderboardConfig
from compstream.domain.leaderboard.errors import LeaderboardError
from compstream.domain.leaderboard.messages import CandidateMessage, WatermarkMessage
from compstream.domain.leaderboard.privacy import team_visible
from compstream.domain.leaderboard.totals import METRICS, Metric, Totals
from compstream.domain.leaderboard.windows import window_from_key


def merge_boards(
    window_key: str,
    messages: Iterable[CandidateMessage],
    config: LeaderboardConfig,
    final: bool = False,
    closed_at: datetime | None = None,
    revision: int = 0,
) -> WindowBoards:
    """Pure ranking of one window from one message per source partition."""
    window = window_from_key(window_key)
    msgs = list(messages)
    if len({m.partition for m in msgs}) != len(msgs):
        raise LeaderboardError(f"{window_key}: more than one message per partition")
    if any(m.window_key != window_key for m in msgs):
        raise LeaderboardError(f"{window_key}: message for another window")

    engineers: dict[str, Totals] = {}
    teams: dict[str, Totals] = {}
    members: dict[str, int] = {}
    for m in msgs:
        for e in m.engineers:
            # Summing (not overwriting) keeps totals right even if an engineer
            # shows up in two partitions after a repartition; exactness of the
            # cut then no longer holds, which is documented, not detected.
            engineers[e.engineer_id] = engineers.get(e.engineer_id, Totals()) + e.totals
        for t in m.teams:
            teams[t.team_id] = teams.get(t.team_id, Totals()) + t.totals
            members[t.team_id] = members.get(t.team_id, 0) + t.members

    boards: list[Board] = []
    for metric in METRICS:
        bound = min((m.k for m in msgs if m.truncated(metric)), default=None)
        n = config.k if bound is None else min(config.k, bound)
        ranked = top_n(engineers.items(), metric, n)
        eligible = sum(m.eligible.get(metric, 0) for m in msgs)
        boards.append(
            Board(
                window_key,
                Scope.ENGINEER,
                metric,
                _entries(ranked, metric),
                eligible=eligible,
                exact_beyond=not (bound is not None and bound < config.k and eligible > len(ranked)),
            )
        )
    shown = {t: tot for t, tot in teams.items() if team_visible(members[t], config.min_team_size)}
    for metric in METRICS:
        ranked = top_n(shown.items(), metric, config.k)
        boards.append(
            Board(
                window_key,
                Scope.TEAM,
                metric,
                _entries(ranked, metric, members),
                eligible=sum(1 for t in shown.values() if t.value(metric) > 0),
                exact_beyond=True,
            )
        )
    boards.sort(key=lambda b: (b.scope.value, b.metric.value))
    return WindowBoards(
        window_key=window_key,
        start=window.start,
        end=window.end,
        final=final,
        closed_at=closed_at,
        boards=tuple(boards),
        versions={m.partition: m.version for m in sorted(msgs, key=lambda m: m.partition)},
        revision=revision,
    )


def _entries(
    ranked: list[tuple[str, Totals]], metric: Metric, members: dict[str, int] | None = None
) -> tuple[BoardEntry, ...]:
    return tuple(
        BoardEntry(rank, ident, totals.value(metric), totals, None if members is None else members[ident])
        for rank, (ident, totals) in enumerate(ranked, start=1)
    )


class MergeState:
    def __init__(self, config: LeaderboardConfig | None = None):
        self.config = config or LeaderboardConfig()
        # window_key -> partition -> latest message
        self.windows: dict[str, dict[int, CandidateMessage]] = {}
        # partition -> highest watermark it reported
        self.watermarks: dict[int, datetime] = {}
        # Highest watermark passed to close(); windows closing at or before it are final.
        self.closed_through: datetime | None = None
        # window_key -> final boards (latest revision), kept for `retention` after closing
        self.closed: dict[str, WindowBoards] = {}
        # window_key -> partition -> final message, for re-ranking on late usage
        self.closed_messages: dict[str, dict[int, CandidateMessage]] = {}
        # Closed windows changed in this batch; revise() publishes them.
        self.pending_revisions: set[str] = set()

    def apply(self, msg: CandidateMessage) -> bool:
        """Take a partition's contribution; False if duplicate, stale or too late."""
        window = window_from_key(msg.window_key)
        if window.is_closed(self.closed_through, self.config.lateness):
            return self._apply_late(msg)
        by_partition = self.windows.setdefault(msg.window_key, {})
        current = by_partition.get(msg.partition)
        if current is not None and msg.version <= current.version:
            return False
        by_partition[msg.partition] = msg
        self.windows[msg.window_key] = by_partition
        # msg.watermark is informational only: a final message may precede
        # sibling finals of the same watermark, so only a WatermarkMessage
        # (sent after all of them) may advance the partition's watermark.
        return True

    def _apply_late(self, msg: CandidateMessage) -> bool:
        """A final message for a window the merge closed already (see the top)."""
        window = window_from_key(msg.window_key)
        lateness, retention = self.config.lateness, self.config.retention
        if not msg.final or window.past_retention(self.closed_through, lateness, retention):
            return False
        by_partition = self.closed_messages.get(msg.window_key, {})
        snap = self.closed.get(msg.window_key)
        if snap is not None and not set(snap.versions) <= set(by_partition):
            return False  # closed before contributions were kept: cannot re-rank exactly
        current = by_partition.get(msg.partition)
        if current is not None and (msg.version <= current.version or msg.same_contribution(current)):
            return False
        by_partition[msg.partition] = msg
        self.closed_messages[msg.window_key] = by_partition
        self.pending_revisions.add(msg.window_key)
        return True

    def revise(self) -> list[WindowBoards]:
        """New final snapshots (revision + 1) of the closed windows changed
        since the last call; call once per batch, after close()."""
        out: list[WindowBoards] = []
        for key in sorted(self.pending_revisions):
            msgs = self.closed_messages.get(key)
            if msgs is None:  # dropped by retention meanwhile
                continue
            prev = self.closed.get(key)
            snap = merge_boards(
                key, msgs.values(), self.config, final=True,
                closed_at=prev.closed_at if prev is not None else self.closed_through,
                revision=prev.revision + 1 if prev is not None else 1,  # revision 0 was the empty board
            )
            self.closed[key] = snap
            out.append(snap)
        self.pending_revisions.clear()
        return out

    def apply_message(self, msg: CandidateMessage | WatermarkMessage) -> bool:
        """Dispatch either message from the candidates topic."""
        if isinstance(msg, CandidateMessage):
            return self.apply(msg)
        if isinstance(msg, WatermarkMessage):
            return self.apply_watermark(msg)
        raise LeaderboardError(f"not a leaderboard message: {type(msg).__name__}")

    def apply_watermark(self, msg: WatermarkMessage) -> bool:
        """Record a partition's watermark; False if not an advance."""
        current = self.watermarks.get(msg.partition)
        if current is not None and msg.watermark <= current:
            return False
        self.watermarks[msg.partition] = msg.watermark
        return True

    def safe_watermark(self, partitions: Iterable[int]) -> datetime | None:
        """Min reported watermark over the given source partitions; None until
        every one of them has reported."""
        marks = []
        for p in partitions:
            if p not in self.watermarks:
                return None
            marks.append(self.watermarks[p])
        return min(marks) if marks else None

    def boards(self, window_key: str) -> WindowBoards:
        """Current boards: final if closed and retained, else provisional."""
        if window_key in self.closed:
            return self.closed[window_key]
        return merge_boards(window_key, self.windows.get(window_key, {}).values(), self.config)

    def open_windows(self) -> list[str]:
        return sorted(self.windows)

    def close(self, watermark: datetime) -> list[WindowBoards]:
        """Finalize windows whose end + lateness <= watermark; return their
        snapshots (for history) and drop closed boards past retention."""
        if watermark.tzinfo is None:
            raise LeaderboardError("watermark has no time zone")
        if self.closed_through is not None and watermark <= self.closed_through:
            return []
        self.closed_through = watermark
        snapshots: list[WindowBoards] = []
        for key in sorted(self.windows):
            window = window_from_key(key)
            if window.is_closed(watermark, self.config.lateness):
                msgs = self.windows.pop(key)
                snap = merge_boards(key, msgs.values(), self.config, final=True, closed_at=watermark)
                self.closed[key] = snap
                self.closed_messages[key] = msgs
                snapshots.append(snap)
        for key in sorted({*self.closed, *self.closed_messages}):
            if window_from_key(key).past_retention(watermark, self.config.lateness, self.config.retention):
                self.closed.pop(key, None)
                self.closed_messages.pop(key, None)
                self.pending_revisions.discard(key)
        return snapshots

    def to_dict(self) -> dict[str, Any]:
        return {
            "windows": {
                k: [by_p[p].to_dict() for p in sorted(by_p)] for k, by_p in sorted(self.windows.items())
            },
            "watermarks": {str(p): c.time_out(w) for p, w in sorted(self.watermarks.items())},
            "closed_through": c.time_out(self.closed_through),
            "closed": [self.closed[k].to_dict() for k in sorted(self.closed)],
            "closed_messages": {
                k: [by_p[p].to_dict() for p in sorted(by_p)] for k, by_p in sorted(self.closed_messages.items())
            },
        }

    @classmethod
    def from_dict(cls, raw: object, config: LeaderboardConfig | None = None) -> "MergeState":
        raw = c.obj(raw, "merge state")
        out = cls(config)
        for name, target in (("windows", out.windows), ("closed_messages", out.closed_messages)):
            if name not in raw and name == "closed_messages":
                continue  # absent in older states
            for key, msgs in c.obj(raw.get(name), name).items():
                if not isinstance(msgs, list):
                    raise LeaderboardError(f"{name}[{key}]: expected a list")
                target[key] = {m.partition: m for m in map(CandidateMessage.from_dict, msgs)}
        marks = c.obj(raw.get("watermarks"), "watermarks")
        for p in marks:
            try:
                out.watermarks[int(p)] = c.req_time(marks, p)
            except ValueError as exc:
                if isinstance(exc, LeaderboardError):
                    raise
                raise LeaderboardError(f"watermarks: bad partition {p!r}") from exc
        out.closed_through = c.opt_time(raw, "closed_through")
        for item in c.req_list(raw, "closed"):
            snap = WindowBoards.from_dict(item)
            out.closed[snap.window_key] = snap
        return out
