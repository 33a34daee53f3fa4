"""Leaderboard merge stage, free of Faust: candidate messages in, public boards,
history rows and state records out (the agent in leaderboards.py moves bytes).

Persisted records (one Faust table, one partition like the candidates topic):
- `w|<window>|<partition>`: the latest candidate message of a partition for a
  window (exactly what MergeState keeps; replaced, never added); kept after the
  window closes, for the retention period, so late usage can re-rank it;
- `c|<window>`: a closed window's final boards (latest revision), kept for the
  retention period;
- `m|meta`: partition watermarks and the close watermark.

Published (compacted `leaderboards` topic): key `<window_key>|<scope>|<metric>`
(e.g. `day:2026-10-03|engineer|tokens`), value = JSON of one public board (see
`public_board`). Engineer ids are pseudonymized when configured; opted-out
engineers never reach the merge; teams below the minimum size are dropped by
the domain. A closed board dropped after retention gets a tombstone, so the
topic (and every reader's cache) stays bounded.

Late adjustments (domain/leaderboard/merge.py): a closed window re-ranked by
late usage is published again with `revision` + 1 and `late_adjusted: true`,
and its rows go to history under that revision (older revisions stay).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from compstream.domain.leaderboard import (
    Board,
    CandidateMessage,
    LeaderboardConfig,
    LeaderboardError,
    MergeState,
    Metric,
    Scope,
    WindowBoards,
    message_from_dict,
    window_from_key,
)
from compstream.domain.leaderboard import _codec as c
from compstream.domain.leaderboard.boards import BOARD_KINDS
from compstream.history.rows import LeaderboardWindowRow
from compstream.worker.leaderboards.partition import dumps

log = logging.getLogger(__name__)
META_KEY = "m|meta"
DIMENSIONS: dict[str, tuple[Scope, Metric]] = {
    f"{scope.value}s-{metric.value}": (scope, metric) for scope, metric in BOARD_KINDS
}


def dimension_of(scope: Scope, metric: Metric) -> str:
    return f"{scope.value}s-{metric.value}"


def board_key(window_key: str, scope: Scope, metric: Metric) -> str:
    return f"{window_key}|{scope.value}|{metric.value}"


def history_token(window_key: str, revision: int = 0) -> str:
    """One token per window revision: a retried close stores the snapshot once."""
    return f"leaderboard:{window_key}" if revision == 0 else f"leaderboard:{window_key}:r{revision}"


def public_board(boards: WindowBoards, board: Board, pseudonymize: Callable[[str], str] | None) -> dict[str, Any]:
    """The published JSON of one board (also what the web view returns)."""
    return {
        **board.to_public_dict(pseudonymize),
        "window_kind": window_from_key(boards.window_key).kind.value,
        "start": c.time_out(boards.start),
        "end": c.time_out(boards.end),
        "final": boards.final,
        "closed_at": c.time_out(boards.closed_at),
        "revision": boards.revision,
        "late_adjusted": boards.late_adjusted,
        "dimension": dimension_of(board.scope, board.metric),
        "pseudonymized": pseudonymize is not None,
    }


def history_rows(snap: WindowBoards, pseudonymize: Callable[[str], str] | None) -> list[LeaderboardWindowRow]:
    """Closed boards as history rows; subjects as published (pseudonyms when on),
    so the history never holds what the boards did not show."""
    if snap.start is None or snap.closed_at is None:
        raise LeaderboardError(f"{snap.window_key}: only closed windows with a start go to history")
    kind = window_from_key(snap.window_key).kind.value
    rows = []
    for board in snap.boards:
        named = pseudonymize if (pseudonymize is not None and board.scope is Scope.ENGINEER) else None
        for e in board.entries:
            rows.append(LeaderboardWindowRow(
                window_kind=kind, window_start=snap.start, dimension=dimension_of(board.scope, board.metric),
                rank=e.rank, subject=named(e.id) if named else e.id, value=e.value,
                tokens=e.totals.tokens, closed_at=snap.closed_at, revision=snap.revision,
            ))
    return rows


@dataclass
class MergeOutput:
    publish: list[tuple[bytes, bytes | None]] = field(default_factory=list)  # None = tombstone
    history: list[tuple[str, list[LeaderboardWindowRow]]] = field(default_factory=list)  # (token, rows)
    records: dict[str, bytes | None] = field(default_factory=dict)  # None = delete
    applied: int = 0
    malformed: int = 0


class MergeStage:
    def __init__(self, config: LeaderboardConfig, partitions: int,
                 pseudonymize: Callable[[str], str] | None = None):
        if partitions < 1:
            raise LeaderboardError(f"partitions must be >= 1, got {partitions}")
        self.config = config
        self.partitions = partitions
        self.pseudonymize = pseudonymize
        self.state: MergeState | None = None

    def loaded(self) -> bool:
        return self.state is not None

    def forget(self) -> None:
        self.state = None

    def restore(self, items: Iterable[tuple[str, bytes]]) -> None:
        state = MergeState(self.config)
        for key, value in items:
            raw = json.loads(value)
            if key == META_KEY:
                marks = c.obj(raw.get("watermarks"), "watermarks")
                state.watermarks = {int(p): c.req_time(marks, p) for p in marks}
                state.closed_through = c.opt_time(raw, "closed_through")
            elif key.startswith("w|"):
                msg = CandidateMessage.from_dict(raw)
                state.windows.setdefault(msg.window_key, {})[msg.partition] = msg
            elif key.startswith("c|"):
                snap = WindowBoards.from_dict(raw)
                state.closed[snap.window_key] = snap
        # `w|` records of a closed window are its kept contributions (a record
        # of a window without its snapshot stays open: the next close takes it).
        for key in [k for k in state.windows if k in state.closed]:
            state.closed_messages[key] = state.windows.pop(key)
        self.state = state

    def process(self, values: list[bytes]) -> MergeOutput:
        state = self._state()
        out = MergeOutput()
        changed: set[str] = set()
        meta_changed = False
        for value in values:
            try:
                msg = message_from_dict(json.loads(value))
            except (ValueError, LeaderboardError) as exc:  # JSONDecodeError is a ValueError
                out.malformed += 1
                log.error("malformed leaderboard candidate message skipped: %s", exc)
                continue
            if not state.apply_message(msg):
                continue
            out.applied += 1
            if isinstance(msg, CandidateMessage):
                changed.add(msg.window_key)
                out.records[f"w|{msg.window_key}|{msg.partition}"] = bytes(value)
            else:
                meta_changed = True
        safe = state.safe_watermark(range(self.partitions))
        if safe is not None and (state.closed_through is None or safe > state.closed_through):
            meta_changed = True
            retained = {k: set(state.closed_messages.get(k, ())) for k in {*state.closed, *state.closed_messages}}
            for snap in state.close(safe):
                changed.discard(snap.window_key)
                self._final(snap, out)
            for key in sorted(set(retained) - set(state.closed) - set(state.closed_messages)):  # past retention
                out.records[f"c|{key}"] = None
                for p in sorted(retained[key]):
                    out.records[f"w|{key}|{p}"] = None
                out.publish.extend((board_key(key, s, m).encode(), None) for s, m in BOARD_KINDS)
        for snap in state.revise():  # closed windows that took late usage this batch
            changed.discard(snap.window_key)
            self._final(snap, out)
        for key in sorted(changed):
            if key in state.windows:
                out.publish.extend(self._boards(state.boards(key)))
        if meta_changed:
            out.records[META_KEY] = dumps({
                "watermarks": {str(p): c.time_out(w) for p, w in sorted(state.watermarks.items())},
                "closed_through": c.time_out(state.closed_through),
            })
        return out

    def _final(self, snap: WindowBoards, out: MergeOutput) -> None:
        """Publish a final snapshot (first or a revision), its history rows, its record."""
        rows = history_rows(snap, self.pseudonymize) if snap.start is not None else []
        if rows:
            out.history.append((history_token(snap.window_key, snap.revision), rows))
        out.publish.extend(self._boards(snap))
        out.records[f"c|{snap.window_key}"] = dumps(snap.to_dict())

    def _boards(self, boards: WindowBoards) -> list[tuple[bytes, bytes]]:
        return [
            (board_key(boards.window_key, b.scope, b.metric).encode(),
             dumps(public_board(boards, b, self.pseudonymize)))
            for b in boards.boards
        ]

    def _state(self) -> MergeState:
        if self.state is None:
            raise LeaderboardError("merge state not restored")
        return self.state

    # -- queries (web view) ------------------------------------------------

    def lookup(self, window_key: str, scope: Scope, metric: Metric) -> dict[str, Any] | None:
        state = self._state()
        if window_key not in state.windows and window_key not in state.closed:
            return None
        boards = state.boards(window_key)
        return public_board(boards, boards.board(scope, metric), self.pseudonymize)

    def published_boards(self) -> list[tuple[bytes, bytes]]:
        """Every board this state has published and not tombstoned, as last
        published (a function of the state): what the leaderboards topic
        holds for it once the checkpoint that wrote the state is committed."""
        state = self._state()
        out = []
        for key in sorted(state.windows):
            out += self._boards(state.boards(key))
        for key in sorted(state.closed):
            out += self._boards(state.closed[key])
        return out
