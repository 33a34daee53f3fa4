"""`GET /leaderboards/{window}/{dimension}`: one public board as JSON.

window:    a window key (`day:2026-10-03`, `week:2026-W40`, `month:2026-10`,
           `all`), or `day` / `week` / `month` for the latest open window of
           that kind (the one with the latest start).
dimension: `engineers-tokens`, `engineers-spend`, `teams-tokens`, `teams-spend`.

Answers 200 with the published board (same JSON as the `leaderboards` topic
value) plus `served_by`; 400 for a bad window or dimension; 404 if no board.

Which worker answers: every worker does. The worker that owns the single
candidates partition answers from the boards its merge published in its
last committed checkpoint (`served_by: "merge-state"`, freshest; never a
board of a batch in flight: core/committed.py); any other worker answers
from the compacted `leaderboards` topic, which it reads incrementally,
read_committed (`served_by: "leaderboards-topic"`, as fresh as the last
publish, refreshed at most every REFRESH_S). Both carry identical JSON for
the same published board.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from compstream.domain.leaderboard import LeaderboardError, Metric, Scope, window_from_key
from compstream.domain.leaderboard.windows import Window, WindowKind
from compstream.worker.leaderboards.merge import board_key

if TYPE_CHECKING:
    from kafka import KafkaConsumer  # untyped: Any to mypy

log = logging.getLogger(__name__)
REFRESH_S = 1.0
# Bounds one refresh: a huge backlog is read over several requests.
READ_RECORDS_MAX = 50_000
POLL_TIMEOUT_MS = 500
LATEST_KINDS = (WindowKind.DAY.value, WindowKind.WEEK.value, WindowKind.MONTH.value)


class BadRequest(ValueError):
    """The request names no valid window or dimension."""


def resolve_window(spec: str, known: Iterable[tuple[str, bool]]) -> str | None:
    """A window key for `spec`; None if `spec` is a kind with no open window."""
    if spec in LATEST_KINDS:
        opened = [window_from_key(k) for k, final in known if not final and k.startswith(spec + ":")]
        return max(opened, key=_start).key if opened else None
    try:
        return window_from_key(spec).key
    except LeaderboardError as exc:
        raise BadRequest(str(exc)) from exc


def _start(window: Window) -> datetime:
    # Only all-time has no start, and LATEST_KINDS leaves it out.
    if window.start is None:
        raise LeaderboardError(f"window {window.key!r} has no start")
    return window.start


class Boards:
    """Public boards by key (`board_key`), as the `leaderboards` topic holds
    them: the latest value per key, a tombstone removes the key."""

    def __init__(self) -> None:
        self.boards: dict[str, dict[str, Any]] = {}

    def put(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.boards.pop(key, None)
        else:
            self.boards[key] = json.loads(value)

    def known_windows(self) -> list[tuple[str, bool]]:
        return [(b["window_key"], bool(b["final"])) for b in self.boards.values()]

    def lookup(self, window_key: str, scope: Scope, metric: Metric) -> dict[str, Any] | None:
        return self.boards.get(board_key(window_key, scope, metric))


class TopicBoards(Boards):
    """Latest public board per key from the compacted `leaderboards` topic.

    Bounded: one entry per live key; tombstones (closed boards past retention)
    remove keys. Blocking (kafka-python); call `refresh` from an executor.
    """

    def __init__(self, bootstrap: str, topic: str):
        super().__init__()
        self.bootstrap = bootstrap
        self.topic = topic
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()
        self._refreshed = 0.0

    def refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._refreshed < REFRESH_S:
                return
            from kafka import KafkaConsumer, TopicPartition

            tp = TopicPartition(self.topic, 0)
            if self._consumer is None:
                # read_committed: the transactional engine writes boards in
                # transactions; an aborted batch's boards must never be served.
                self._consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                               enable_auto_commit=False, auto_offset_reset="earliest",
                                               isolation_level="read_committed")
                self._consumer.assign([tp])
                self._consumer.seek_to_beginning(tp)
            end = self._consumer.end_offsets([tp])[tp]
            read = 0
            while self._consumer.position(tp) < end and read < READ_RECORDS_MAX:
                for records in self._consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                    for r in records:
                        read += 1
                        self.put(r.key.decode(), r.value)
            self._refreshed = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
