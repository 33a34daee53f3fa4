"""Row shapes of the history tables, independent of any storage engine.

Each dataclass mirrors one ClickHouse table column for column, so both
adapters (memory and ClickHouse) and the auditor SQL agree on one vocabulary.
Money is always integer nano-dollars; times are aware UTC datetimes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, NamedTuple, Sequence, get_args, get_type_hints

from compstream.domain.balance import Posting
from compstream.domain.events import EVENT_CLASSES, EVENT_FIELDS, Event, event_to_json
from compstream.domain.twin import fast_constructor, twin_class

# One batch is one ClickHouse insert per table; bounding it keeps a retry cheap
# and keeps the whole batch inside one insert block (one dedup hash).
BATCH_ROWS_MAX = 50_000
DEDUP_TOKEN_LENGTH_MAX = 512
SCHEMA_VERSION = 1
# Query helpers return lists; an unbounded read could exhaust memory.
QUERY_ROWS_MAX = 1_000_000


class HistoryError(RuntimeError):
    """A history operation that cannot proceed; the message says why."""


def utc(value: datetime) -> datetime:
    """Naive values coming back from the engine are UTC by construction."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """'YYYY-MM' -> [first instant of the month, first instant of the next)."""
    try:
        year_text, month_text = period.split("-")
        year, month = int(year_text), int(month_text)
        start = datetime(year, month, 1, tzinfo=timezone.utc)
    except ValueError as exc:
        raise HistoryError(f"period must be YYYY-MM, got {period!r}") from exc
    if len(year_text) != 4 or len(month_text) != 2:
        raise HistoryError(f"period must be YYYY-MM, got {period!r}")
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


class RowCounts(NamedTuple):
    """Physical rows vs distinct identities; equal means no duplicate stored."""

    rows: int
    distinct: int


class ChainHead(NamedTuple):
    engineer_id: str
    seq: int
    hash: str


class EventCoord(NamedTuple):
    """Where a stored event was read from; orders events the way Kafka does."""

    kafka_topic: str
    kafka_partition: int
    kafka_offset: int


# Before every stored event: the start of a listing.
EVENT_COORD_START = EventCoord("", -1, -1)


class LateEvent(NamedTuple):
    """An event the worker applied late, and the watermark it was judged against."""

    engineer_id: str
    event_id: str
    applied_watermark: datetime
    applied_seq: int | None


class StoredPayload(NamedTuple):
    """One stored event's canonical JSON and its Kafka coordinates."""

    kafka_topic: str
    kafka_partition: int
    kafka_offset: int
    payload: str

    @property
    def coord(self) -> EventCoord:
        return EventCoord(self.kafka_topic, self.kafka_partition, self.kafka_offset)


@dataclass(frozen=True, slots=True)
class EventRow:
    """One canonical event plus where it came from (Kafka coordinates)."""

    type: str
    event_id: str
    engineer_id: str
    event_time: datetime
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int
    ingest_time: datetime
    payload: str
    grant_id: str | None = None
    amount_nanos: int | None = None
    expires_at: datetime | None = None
    grant_kind: str | None = None
    provider: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost_nanos: int | None = None
    unpriced_reason: str | None = None
    price_version: str | None = None
    corrects_event_id: str | None = None
    schema_version: int = SCHEMA_VERSION
    late: bool = False
    team_id: str | None = None
    opted_out: bool | None = None
    annual_cash_nanos: int | None = None
    # The engineer book's watermark when the event was applied (its late
    # verdict was taken against it): audit verify replays late events from it.
    applied_watermark: datetime | None = None
    # The book's count of ledger events taken in (events_applied) once this
    # one was: the engineer's events in the order the worker applied them,
    # which is not their Kafka timestamps' order (a batch applies HR events
    # first; producers' clocks differ). None: stored before it was recorded.
    applied_seq: int | None = None

    @classmethod
    def from_event(
        cls,
        event: Event,
        *,
        topic: str,
        partition: int,
        offset: int,
        ingest_time: datetime,
        late: bool = False,
        payload: str | None = None,
        schema_version: int = SCHEMA_VERSION,
        applied_watermark: datetime | None = None,
        applied_seq: int | None = None,
    ) -> "EventRow":
        """Flatten an event; `payload` defaults to its canonical JSON."""
        build = _ROW_BUILDERS.get(type(event))
        if build is None:
            raise TypeError(f"not an event: {type(event).__name__}")
        return build(event, topic, partition, offset, ingest_time, late,
                     payload if payload is not None else event_to_json(event), schema_version, applied_watermark,
                     applied_seq)

    def key(self) -> tuple:
        """Identity of a stored event: the Kafka record it was read from."""
        return (self.kafka_topic, self.kafka_partition, self.kafka_offset, self.event_id)

    def payload_dict(self) -> dict:
        return json.loads(self.payload)


# Per event type: (event field, EventRow column) of the flattened fields,
# computed once at import from the event definitions (dataclasses.fields per
# row was a hot spot); one entry per event class, so bounded.
_EVENT_COLUMNS: dict[type, tuple[tuple[str, str], ...]] = {}
# EventRow columns that are not an event field: the envelope every row has.
# Each event's time field is the `event_time` column.
ENVELOPE_COLUMNS = frozenset({
    "type", "event_id", "engineer_id", "event_time", "kafka_topic", "kafka_partition", "kafka_offset",
    "ingest_time", "payload", "schema_version", "late", "applied_watermark", "applied_seq"})
_EVENT_TIME_FIELDS = ("effective_at", "occurred_at")
# The grant's `kind` would be confused with a posting kind.
_COLUMN_OF_FIELD = {"kind": "grant_kind"}


def _event_columns(event: Any) -> tuple[tuple[str, str], ...]:
    return tuple((spec.name, _COLUMN_OF_FIELD.get(spec.name, spec.name))
                 for spec in EVENT_FIELDS[event if isinstance(event, type) else type(event)]
                 if spec.name not in ENVELOPE_COLUMNS and spec.name not in _EVENT_TIME_FIELDS)


def _check_event_columns() -> None:
    """EventRow is written out, not generated: its field order is the order of
    the history wire JSON (orjson writes a dataclass's fields in order) and of
    the table's columns, which only grow by migrations; and type checkers need
    the written class. So each event field must have its nullable column, and
    each column an event field; a new field fails here, at import."""
    hints = get_type_hints(EventRow)
    flattened = set()
    for cls in EVENT_CLASSES:
        columns = _EVENT_COLUMNS[cls] = _event_columns(cls)
        for name, column in columns:
            kind = next(s.kind for s in EVENT_FIELDS[cls] if s.name == name)
            if get_args(hints.get(column)) not in ((kind, type(None)), (type(None), kind)):
                raise TypeError(f"{cls.__name__}.{name} needs the column `{column}: "
                                f"{kind.__name__} | None = None` in EventRow (history/rows.py) "
                                f"and a migration adding it (history/schema.py)")
            flattened.add(column)
    extra = set(hints) - ENVELOPE_COLUMNS - flattened
    if extra:
        raise TypeError(f"EventRow columns {sorted(extra)} are no event's field")


_check_event_columns()

_UTC = timezone.utc


def _row_builder(cls: type) -> Callable[..., EventRow]:
    """EventRow.from_event for events of `cls`, positional, generated from
    its columns: the worker builds one row per event, and the frozen
    __init__ with 29 keyword arguments was most of that row's cost. It
    fills a twin of EventRow (domain/twin.py), normalizing times as `utc`."""
    own = dict((column, name) for name, column in _EVENT_COLUMNS[cls])
    lines = ["def build(e, topic, partition, offset, ingest_time, late, payload, schema_version,"
             " applied_watermark, applied_seq):",
             "    r = _new(_twin)",
             "    t = e.event_time",
             "    r.event_time = t if t.tzinfo is _UTC else _utc(t)",
             "    r.ingest_time = ingest_time if ingest_time.tzinfo is _UTC else _utc(ingest_time)",
             "    r.applied_watermark = (applied_watermark if applied_watermark is None"
             " or applied_watermark.tzinfo is _UTC else _utc(applied_watermark))"]
    given = {"type": "e.type", "event_id": "e.event_id", "engineer_id": "e.engineer_id", "kafka_topic": "topic",
             "kafka_partition": "partition", "kafka_offset": "offset", "payload": "payload",
             "schema_version": "schema_version", "late": "late", "applied_seq": "applied_seq"}
    namespace: dict[str, Any] = {"_new": object.__new__, "_twin": twin_class(EventRow), "_cls": EventRow,
                                 "_UTC": _UTC, "_utc": utc}
    for f in dataclasses.fields(EventRow):
        if f.name in ("event_time", "ingest_time", "applied_watermark"):
            continue
        if f.name in given:
            lines.append(f"    r.{f.name} = {given[f.name]}")
        elif f.name in own:
            lines.append(f"    r.{f.name} = e.{own[f.name]}")
        elif f.default is None:  # another event type's column
            lines.append(f"    r.{f.name} = None")
        else:
            raise TypeError(f"EventRow.{f.name}: no value for {cls.__name__} rows")
    lines += ["    r.__class__ = _cls", "    return r"]
    exec("\n".join(lines) + "\n", namespace)  # noqa: S102 - generated from the field names above
    build: Callable[..., EventRow] = namespace["build"]
    return build


_ROW_BUILDERS: dict[type, Callable[..., EventRow]] = {cls: _row_builder(cls) for cls in EVENT_CLASSES}


@dataclass(frozen=True, slots=True)
class PostingRow(Posting):
    """One balance change in an engineer's hash chain, as stored. Its fields
    (and their order, the postings table's columns) are the ledger's
    `Posting`'s: one definition, in domain/balance.py."""

    @classmethod
    def from_posting(cls, posting: Any) -> "PostingRow":
        """Copy a ledger posting (any object with the same attribute names)."""
        p = posting
        kind, at = p.kind, p.event_time
        # Hot path (the worker converts every posting): the ledger's kinds are
        # str and its times UTC already, so skip the lookups that would keep them.
        if type(kind) is not str:
            kind = getattr(kind, "value", kind)
        if at.tzinfo is not timezone.utc:
            at = utc(at)
        return _new_posting_row(p.engineer_id, p.seq, kind, p.grant_id, p.amount_nanos,
                                p.cause_event_id, at, p.available_after_nanos, p.prev_hash, p.hash)

    def key(self) -> tuple:
        # The hash is part of the identity: a byte-identical retry collapses,
        # a forged row with the same seq stays visible to the verifier.
        return (self.engineer_id, self.seq, self.hash)


_new_posting_row = fast_constructor(PostingRow)  # one per posting: without the frozen __init__


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int
    raw: bytes
    error: str
    stage: str
    # Use the Kafka record timestamp, not "now": a retry then repeats it.
    received_at: datetime

    def key(self) -> tuple:
        return (self.kafka_topic, self.kafka_partition, self.kafka_offset, self.stage)


@dataclass(frozen=True, slots=True)
class LeaderboardWindowRow:
    window_kind: str
    window_start: datetime
    dimension: str
    rank: int
    subject: str
    value: int
    tokens: int
    closed_at: datetime
    # 0 for the first final board; +1 per late adjustment (docs/leaderboards.md).
    # In the key: every revision is kept, none overwrites another.
    revision: int = 0

    def key(self) -> tuple:
        return (self.window_kind, self.dimension, self.window_start, self.rank, self.revision)


@dataclass(frozen=True, slots=True)
class DigestRow:
    period: str
    digest: str
    engineers: int
    postings: int
    computed_at: datetime

    def key(self) -> tuple:
        # Every computation is kept: a changed digest for the same period is
        # itself audit evidence.
        return (self.period, self.computed_at, self.digest)


@dataclass(frozen=True, slots=True)
class WatermarkRow:
    """A source partition's finality at a batch: every posting of its
    engineers with event time before `final_through` is written, and only
    those; `stream_time` is the latest usage time seen (balances are as of
    it). Written whenever a batch moves the watermark: statements read the
    latest one at or before their instant."""

    partition: int
    final_through: datetime
    stream_time: datetime

    def key(self) -> tuple:
        return (self.partition, self.final_through)


TABLE_ROW_TYPES: dict[str, type] = {
    "events": EventRow,
    "postings": PostingRow,
    "dead_letters": DeadLetterRow,
    "leaderboard_windows": LeaderboardWindowRow,
    "digests": DigestRow,
    "watermarks": WatermarkRow,
}


@dataclass(frozen=True)
class HistoryBatch:
    """Rows to append together; one insert per non-empty table."""

    events: tuple[EventRow, ...] = ()
    postings: tuple[PostingRow, ...] = ()
    dead_letters: tuple[DeadLetterRow, ...] = ()
    leaderboard_windows: tuple[LeaderboardWindowRow, ...] = ()
    digests: tuple[DigestRow, ...] = ()
    watermarks: tuple[WatermarkRow, ...] = ()
    by_table: dict[str, tuple] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_table = {name: tuple(getattr(self, name)) for name in TABLE_ROW_TYPES}
        total = sum(len(rows) for rows in by_table.values())
        if total > BATCH_ROWS_MAX:
            raise HistoryError(f"batch of {total} rows exceeds BATCH_ROWS_MAX={BATCH_ROWS_MAX}")
        for name, rows in by_table.items():
            row_type = TABLE_ROW_TYPES[name]
            for row in rows:
                if not isinstance(row, row_type):
                    raise HistoryError(f"{name} holds a {type(row).__name__}, expected {row_type.__name__}")
        object.__setattr__(self, "by_table", by_table)

    def row_count(self) -> int:
        return sum(len(rows) for rows in self.by_table.values())


def history_batches(events: Sequence = (), postings: Sequence = (), dead_letters: Sequence = (),
                    rows_max: int = BATCH_ROWS_MAX, watermarks: Sequence = ()) -> tuple[HistoryBatch, ...]:
    """The rows of one source batch as history batches of at most `rows_max`
    rows each (at least one batch, maybe empty). Each table's rows keep their
    order and every batch holds a contiguous slice of them, so whatever prefix
    of the batches was written before a crash, the written rows of every
    partition (offsets) and engineer (seqs) form a prefix, which is what the
    sink's high-water filter assumes."""
    if isinstance(rows_max, bool) or not isinstance(rows_max, int) or not 1 <= rows_max <= BATCH_ROWS_MAX:
        raise HistoryError(f"rows_max must be 1..{BATCH_ROWS_MAX}, got {rows_max!r}")
    # Watermarks last: a piece written before a crash never claims postings
    # final that a later piece holds.
    tables = (("events", tuple(events)), ("postings", tuple(postings)), ("dead_letters", tuple(dead_letters)),
              ("watermarks", tuple(watermarks)))
    out: list[HistoryBatch] = []
    chunk: dict[str, tuple] = {}
    room = rows_max
    for name, rows in tables:
        start = 0
        while start < len(rows):
            take = rows[start:start + room]
            chunk[name] = take
            start += len(take)
            room -= len(take)
            if room == 0:
                out.append(HistoryBatch(**chunk))
                chunk, room = {}, rows_max
    if chunk or not out:
        out.append(HistoryBatch(**chunk))
    return tuple(out)


def table_token(dedup_token: str, table: str) -> str:
    """Per-table insert token: one batch spans tables, each insert dedups alone."""
    if not dedup_token or len(dedup_token) > DEDUP_TOKEN_LENGTH_MAX:
        raise HistoryError(f"dedup token must be 1..{DEDUP_TOKEN_LENGTH_MAX} characters")
    return f"{dedup_token}|{table}"


def kafka_batch_token(topic: str, partition: int, first_offset: int, last_offset: int) -> str:
    """The conventional token for a batch read from one Kafka partition."""
    if first_offset > last_offset:
        raise HistoryError(f"offset range {first_offset}-{last_offset} is empty")
    return f"{topic}:{partition}:{first_offset}-{last_offset}"
