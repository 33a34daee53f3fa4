"""The stream's decisions, kept for a rebuild to take again as the stream did.

Which events were late depends on what the stream had read when they arrived
(domain/book.py): a rebuild reads the backlog again in other batches, and
judging again it finds some late events on time and, where its batch cut
falls otherwise, some on-time events late. History keeps the first
decisions, and the statements follow them. So `compstream rebuild` reads
each event's first row on the history topic and writes, before it starts the
worker, `<data dir>/recorded-late.json`:

- `late`: the events the stream applied late, each with the watermark it was
  judged under. A book keeps such an event among its pending ones at that
  watermark and applies it there, late (events.LateAt), whatever order the
  rebuild reads it in.
- `expected`: where (source topic, partition, offset) the rebuild will read
  an event it could otherwise judge otherwise, with the time its book must
  not be final past until then: the event's time (it was on time), or its
  watermark (it was late). A usage event is at risk only where usage read
  before it on its partition moved stream time past that bound by more than
  the lateness (else no batch cut can make it late); HR events are read in
  any order relative to usage, so each counts. The worker holds such a book's
  watermark back (LedgerProcessor.capped) until its reading position passes
  the offset: read, or gone from the topic.

- `refused`: the source records the stream refused (dead letters with stage
  too_old, book_full or future): refused again, whatever the rebuilt book
  would say. And `through`: per source partition, the offset up to which the
  stream had judged every record (the group's committed offsets). Below it,
  a record the stream did not refuse was applied (or was a duplicate), so the
  rebuild never refuses it for lack of room in its book: a rebuild's batches
  hold other events pending than the stream's did, and its books keep late
  decisions waiting, so its books can be fuller. Without these a rebuild
  could leave out usage the statements count, and `diff` would not see it
  (it leaves out every refused record).

New events have no entry and are judged as they come. A file of an earlier
rebuild is replaced; none is written when there is nothing to keep. The file
names the lateness the decisions were kept under: a worker run with another
one would hold books back at the wrong times, so it refuses to start. Once
the rebuilt worker has committed past `through` on every source partition,
every entry is applied and committed: the file is retired (`retire`, by the
worker where it holds every partition, and by `rebuild --wait`), and later
restarts and lateness changes no longer depend on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import orjson

from compstream.domain.book_codec import EPOCH, from_us, to_us
from compstream.domain.events import LEDGER_EVENT_TYPES
from compstream.history.rows import HistoryError
from compstream.history.wire import place_rows

FILE_NAME = "recorded-late.json"
TAKEN_NAME = "recorded-late.taken.json"  # a retired file, kept for the record
VERSION = 2  # 2: names its lateness_s, with refused and through; version 1 files (without) are still read
VERSIONS_READ = (1, 2)
# Decisions and expected places a worker holds (~200 B each in memory);
# past it a rebuild refuses to write them rather than a worker running short.
ENTRIES_MAX = 2_000_000
# Events whose first row is told apart (a hash each, ~60 B): past it the first
# rows are not known, and nothing is kept.
EVENTS_SEEN_MAX = 20_000_000

Place = tuple[str, int, int, datetime]  # source topic, partition, offset, bound
Source = tuple[str, int, int]  # source topic, partition, offset


class RecordedLateError(ValueError):
    """The decisions cannot be read or kept: the message names the file and why."""


@dataclass
class RecordedDecisions:
    # (engineer, event id) -> (watermark, order among the engineer's late events)
    late: dict[tuple[str, str], tuple[datetime, int]]
    # engineer -> the places of its events a rebuild reads, with their bounds
    expected: dict[str, list[Place]]
    # source record -> the stage the stream refused it with
    refused: dict[Source, str] = field(default_factory=dict)
    # (source topic, partition) -> the first offset the stream had not judged
    through: dict[tuple[str, int], int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.late) + sum(len(v) for v in self.expected.values()) + len(self.refused) + len(self.through)


def collect(records: Iterable[tuple[str, bytes]], lateness: timedelta,
            moves: Mapping[tuple[str, int], Sequence[tuple[int, datetime]]] | None = None
            ) -> RecordedDecisions | None:
    """From the history topic's records ((where, value), each partition in
    order): the first row of each event. None past EVENTS_SEEN_MAX events.
    `moves`: per source partition, (offset, time) of the dead-lettered usage
    that moved stream time too (no event row; ops/diff.dead_letters_in), by
    offset."""
    seen: set[int] = set()
    stream: dict[tuple[str, int], datetime] = {}  # source partition -> usage time read so far
    moved_at: dict[tuple[str, int], int] = {}  # source partition -> how many of its moves are folded in
    late: dict[str, list[tuple[datetime, int, int, str]]] = {}
    expected: dict[str, list[Place]] = {}
    n = 0
    for where, value in records:
        try:
            rows = place_rows(value)
        except HistoryError as exc:
            raise RecordedLateError(f"history record {where}: {exc}") from exc
        for engineer, event_id, kind, at, topic, p, offset, is_late, watermark, seq in rows:
            h = hash((engineer, event_id))
            if h in seen or kind not in LEDGER_EVENT_TYPES:
                continue
            seen.add(h)
            if len(seen) > EVENTS_SEEN_MAX:
                return None
            n += 1
            bound = watermark if is_late and watermark is not None else at
            if is_late and watermark is not None:
                late.setdefault(engineer, []).append((watermark, -1 if seq is None else seq, n, event_id))
            if kind == "usage":
                pending = moves.get((topic, p)) if moves else None
                if pending:  # dead-lettered usage read before this one moved stream time as well
                    i = moved_at.get((topic, p), 0)
                    while i < len(pending) and pending[i][0] < offset:
                        if pending[i][1] > stream.get((topic, p), EPOCH):
                            stream[(topic, p)] = pending[i][1]
                        i += 1
                    moved_at[(topic, p)] = i
                before = stream.get((topic, p))
                if before is not None and before - lateness > bound:
                    expected.setdefault(engineer, []).append((topic, p, offset, bound))
                if before is None or at > before:
                    stream[(topic, p)] = at
            else:
                expected.setdefault(engineer, []).append((topic, p, offset, bound))
    # A book's late events by watermark, then as the stream applied them.
    ordered = {e: [(event_id, w) for w, _, _, event_id in sorted(rows)] for e, rows in late.items()}
    return RecordedDecisions({(e, event_id): (w, order) for e, rows in ordered.items()
                              for order, (event_id, w) in enumerate(rows)}, expected)


def summary(recorded: RecordedDecisions, data_dir: Path) -> str:
    """What a worker takes again, for its log."""
    return (f"taking {len(recorded.late)} late decisions of the stream again, holding books back at "
            f"{sum(len(v) for v in recorded.expected.values())} places, refusing {len(recorded.refused)} records "
            f"again, below the stream's positions on {len(recorded.through)} source partitions ({path_of(data_dir)})")


def path_of(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def write(data_dir: Path, recorded: RecordedDecisions, lateness_s: int) -> int:
    """Replace the file (nothing to keep: remove it); returns how many entries.
    `lateness_s`: what the decisions were kept under (read checks it)."""
    path = path_of(data_dir)
    (data_dir / TAKEN_NAME).unlink(missing_ok=True)  # an earlier rebuild's, retired: superseded
    count = len(recorded)
    if count > ENTRIES_MAX:
        raise RecordedLateError(f"{count} decisions and places, more than ENTRIES_MAX={ENTRIES_MAX}")
    if not count:
        path.unlink(missing_ok=True)
        return 0
    late: dict[str, list[tuple[int, str, int]]] = {}
    for (engineer, event_id), (w, order) in recorded.late.items():
        late.setdefault(engineer, []).append((order, event_id, to_us(w)))
    body = {"version": VERSION, "lateness_s": lateness_s,
            "late": {e: [[event_id, w] for _, event_id, w in sorted(rows)] for e, rows in sorted(late.items())},
            "expected": {e: [[t, p, o, to_us(b)] for t, p, o, b in places]
                         for e, places in sorted(recorded.expected.items())},
            "refused": [[t, p, o, stage] for (t, p, o), stage in sorted(recorded.refused.items())],
            "through": [[t, p, o] for (t, p), o in sorted(recorded.through.items())]}
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(body))
    os.replace(tmp, path)  # a worker starting meanwhile reads the old file or the new one, whole
    return count


def retire(data_dir: Path) -> Path | None:
    """Move the file aside once the rebuilt worker has caught up (every
    entry applied and committed: the worker needs it no more). The worker
    does it itself where it holds every source partition; `rebuild --wait`
    too. Returns where the retired file is (moved now or before), None if
    there is none."""
    taken = data_dir / TAKEN_NAME
    try:
        os.replace(path_of(data_dir), taken)
    except FileNotFoundError:
        pass
    return taken if taken.exists() else None


def read(data_dir: Path, lateness_s: int) -> RecordedDecisions | None:
    """The file's decisions; None without a file. A file kept under another
    `lateness_s` than the worker's is refused (RecordedLateError)."""
    path = path_of(data_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    fix = "; remove it to rebuild judging every event again"
    try:
        body = orjson.loads(data)
        if not isinstance(body, dict) or body.get("version") not in VERSIONS_READ \
                or not isinstance(body.get("late"), dict) or not isinstance(body.get("expected"), dict):
            raise RecordedLateError(f"not version {VERSION} decisions")
        kept_under = body.get("lateness_s")
        if kept_under is not None and kept_under != lateness_s:
            # Held at another lateness, books would wait at the wrong times and
            # the late decisions would no longer line up with the watermarks.
            raise RecordedLateError(
                f"kept under COMPSTREAM_LATENESS_S={kept_under!r}, the worker runs with {lateness_s}: run the "
                f"rebuilt worker with {kept_under!r} until it has caught up")
        out = RecordedDecisions({}, {})
        for engineer, rows in body["late"].items():
            for order, (event_id, watermark_us) in enumerate(rows):
                if not isinstance(event_id, str) or type(watermark_us) is not int:
                    raise RecordedLateError(f"bad decision {[event_id, watermark_us]!r} of {engineer!r}")
                out.late[(engineer, event_id)] = (from_us(watermark_us), order)
        for engineer, places in body["expected"].items():
            got = out.expected[engineer] = []
            for topic, p, offset, bound_us in places:
                if not isinstance(topic, str) or not all(type(v) is int for v in (p, offset, bound_us)):
                    raise RecordedLateError(f"bad place {[topic, p, offset, bound_us]!r} of {engineer!r}")
                got.append((topic, p, offset, from_us(bound_us)))
        for topic, p, offset, stage in body.get("refused", []):
            if not isinstance(topic, str) or not isinstance(stage, str) or not all(type(v) is int for v in (p, offset)):
                raise RecordedLateError(f"bad refusal {[topic, p, offset, stage]!r}")
            out.refused[(topic, p, offset)] = stage
        for topic, p, offset in body.get("through", []):
            if not isinstance(topic, str) or not all(type(v) is int for v in (p, offset)):
                raise RecordedLateError(f"bad position {[topic, p, offset]!r}")
            out.through[(topic, p)] = offset
        if len(out) > ENTRIES_MAX:
            raise RecordedLateError(f"more than ENTRIES_MAX={ENTRIES_MAX} entries")
        return out
    except RecordedLateError as exc:
        raise RecordedLateError(f"{path}: {exc}{fix}") from exc
    except (orjson.JSONDecodeError, TypeError, ValueError, OverflowError) as exc:
        raise RecordedLateError(f"{path}: unreadable ({type(exc).__name__}: {exc}){fix}") from exc
