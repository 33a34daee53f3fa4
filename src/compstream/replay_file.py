"""Event logs as JSON Lines for `compstream replay`.

* `read_jsonl(paths, on_bad)` yields events from one or more files; every bad
  line goes to `on_bad(BadLine)` with file, 1-based line number and reason, and
  is never applied. Blank lines are not events and are skipped.
* `replay_events(events, as_of)` is the source-independent part (the Kafka
  source can feed it too); `balances_document` renders the output JSON.
"""

from __future__ import annotations

import json
import os
from array import array
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Sequence

from compstream.domain.events import Event, EventError, event_from_dict, format_time
from compstream.domain.replay import ReplayResult, replay_detailed


@dataclass(frozen=True, slots=True)
class BadLine:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "reason": self.reason}


class SourceMap:
    """Input position (index of an accepted event) -> (path, line), compactly."""

    def __init__(self) -> None:
        self._lines = array("q")
        self._starts: list[tuple[int, str]] = []  # (first position, path)

    def start(self, path: str) -> None:
        self._starts.append((len(self._lines), path))

    def add(self, line: int) -> None:
        self._lines.append(line)

    def locate(self, position: int) -> tuple[str, int]:
        path = ""
        for first, p in self._starts:
            if first > position:
                break
            path = p
        return path, self._lines[position]


def parse_line(raw: bytes) -> Event:
    """One JSONL line -> event; raises EventError (JSON errors included)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventError(f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise EventError(f"invalid JSON: {exc}") from exc
    return event_from_dict(obj)


def read_jsonl(
    paths: Sequence[str | os.PathLike],
    on_bad: Callable[[BadLine], None],
    *,
    source_map: SourceMap | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Event]:
    """Yield the events of every file in order. Raises OSError if a file
    cannot be opened or read."""
    for path in paths:
        name = os.fspath(path)
        if source_map is not None:
            source_map.start(name)
        with open(name, "rb") as fh:
            pending_bytes = 0
            for lineno, raw in enumerate(fh, 1):
                pending_bytes += len(raw)
                if on_bytes is not None and pending_bytes >= 1 << 20:
                    on_bytes(pending_bytes)
                    pending_bytes = 0
                if not raw.strip():
                    continue
                try:
                    event = parse_line(raw)
                except EventError as exc:
                    on_bad(BadLine(name, lineno, str(exc)))
                    continue
                if source_map is not None:
                    source_map.add(lineno)
                yield event
            if on_bytes is not None and pending_bytes:
                on_bytes(pending_bytes)


def replay_events(events: Iterable[Event], as_of: datetime | None = None) -> ReplayResult:
    """Source-independent replay: balances plus conflict/ledger reports."""
    return replay_detailed(events, as_of, postings=False)


def balances_document(result: ReplayResult, as_of: datetime | None) -> dict[str, Any]:
    return {
        "as_of": None if as_of is None else format_time(as_of),
        "engineers": {eng: result.balances[eng].to_dict() for eng in sorted(result.balances)},
    }
