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

import orjson

from compstream.domain.events import Event, EventError, event_from_dict, format_time
from compstream.domain.replay import ReplayResult, replay_detailed
from compstream.json_bytes import orjson_if_same
from compstream.replay.jsonl_fast import line_event


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
        self.add: Callable[[int], None] = self._lines.append  # add(line); once per event

    def start(self, path: str) -> None:
        self._starts.append((len(self._lines), path))

    def locate(self, position: int) -> tuple[str, int]:
        _, path, line = self.locate_file(position)
        return path, line

    def locate_file(self, position: int) -> tuple[int, str, int]:
        """(index of the file among those started, path, line): the index
        orders positions across files even when one path is given twice."""
        index, path = -1, ""
        for i, (first, p) in enumerate(self._starts):
            if first > position:
                break
            index, path = i, p
        return index, path, self._lines[position]


def parse_line(raw: bytes) -> Event:
    """One JSONL line -> event; raises EventError (JSON errors included).

    Fast path: `jsonl_fast.line_event` (msgspec, then orjson + event_fast).
    Whatever that does not accept (bad JSON, NaN, odd timestamps, invalid
    fields) goes through `parse_line_reference`, so results and error
    messages are those of the stdlib parser and event_from_dict."""
    event = line_event(raw)
    return event if event is not None else parse_line_reference(raw)


def parse_line_reference(raw: bytes) -> Event:
    """The reference parser: stdlib json + event_from_dict."""
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
        add_line = None if source_map is None else source_map.add
        with open(name, "rb") as fh:
            pending_bytes = 0
            for lineno, raw in enumerate(fh, 1):
                pending_bytes += len(raw)
                if on_bytes is not None and pending_bytes >= 1 << 20:
                    on_bytes(pending_bytes)
                    pending_bytes = 0
                if raw.isspace():  # == not raw.strip() (same ASCII set), without a copy
                    continue
                event = line_event(raw)  # parse_line, inlined: once per event
                if event is None:
                    try:
                        event = parse_line_reference(raw)
                    except EventError as exc:
                        on_bad(BadLine(name, lineno, str(exc)))
                        continue
                if add_line is not None:
                    add_line(lineno)
                yield event
            if on_bytes is not None and pending_bytes:
                on_bytes(pending_bytes)


def replay_events(events: Iterable[Event], as_of: datetime | None = None) -> ReplayResult:
    """Source-independent replay: balances plus conflict/ledger reports."""
    return replay_detailed(events, as_of, postings=False)


def document_text(doc: dict[str, Any]) -> str:
    """`json.dumps(doc, indent=2)` plus a newline, for a balances document
    (ints, strings, None: no floats, where the two differ). orjson writes the
    same text ~10x faster unless a string holds what json escapes (non-ASCII,
    DEL, quotes, backslashes) or an int is beyond orjson's 64 bits."""
    data = orjson_if_same(doc, orjson.OPT_INDENT_2)
    if data is not None:
        return data.decode("ascii") + "\n"
    return json.dumps(doc, indent=2) + "\n"


def balances_document(result: ReplayResult, as_of: datetime | None) -> dict[str, Any]:
    return {
        "as_of": None if as_of is None else format_time(as_of),
        "engineers": {eng: result.balances[eng].to_dict() for eng in sorted(result.balances)},
    }
