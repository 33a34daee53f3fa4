"""In-memory adapter with the same observable semantics as the ClickHouse one.

It keeps physical rows (what an insert wrote) separately from the collapsed
view (what `FINAL` returns), and remembers the last DEDUP_WINDOW_BLOCKS insert
tokens per table, so the shared contract tests mean the same thing on both.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

from compstream.history import schema
from compstream.history.rows import (
    QUERY_ROWS_MAX,
    TABLE_ROW_TYPES,
    ChainHead,
    DeadLetterRow,
    DigestRow,
    EventCoord,
    EventRow,
    HistoryBatch,
    HistoryError,
    LateEvent,
    LeaderboardWindowRow,
    PostingRow,
    RowCounts,
    StoredPayload,
    WatermarkRow,
    period_bounds,
    table_token,
)

_COLLAPSING = {"events", "postings", "dead_letters", "leaderboard_windows", "watermarks"}


class MemoryHistoryStore:
    def __init__(self, *, database: str = "compstream") -> None:
        self.database = database
        # Physical rows per table; tests forge and tamper with them directly.
        self.tables: dict[str, list[Any]] = {name: [] for name in TABLE_ROW_TYPES}
        self._tokens: dict[str, deque[str]] = {
            name: deque(maxlen=schema.DEDUP_WINDOW_BLOCKS) for name in TABLE_ROW_TYPES
        }
        self._migrations: list[int] = []
        self._closed = False

    def migrate(self) -> list[int]:
        schema.check_migrations()
        pending = [m.version for m in schema.MIGRATIONS if m.version not in self._migrations]
        self._migrations.extend(pending)
        return pending

    def append_batch(self, batch: HistoryBatch, dedup_token: str) -> None:
        if self._closed:
            raise HistoryError("history store is closed")
        if not self._migrations:
            raise HistoryError("history store is not migrated")
        for table, rows in batch.by_table.items():
            token = table_token(dedup_token, table)
            if not rows or token in self._tokens[table]:
                continue
            self._tokens[table].append(token)
            self.tables[table].extend(rows)

    def _collapsed(self, table: str) -> list:
        # Last write wins per key, like ReplacingMergeTree without a version.
        latest: dict[tuple, object] = {}
        for row in self.tables[table]:
            latest.pop(row.key(), None)
            latest[row.key()] = row
        return list(latest.values())

    def _view(self, table: str) -> list:
        return self._collapsed(table) if table in _COLLAPSING else list(self.tables[table])

    def _counts(self, table: str, collapsed: bool) -> RowCounts:
        rows = self._view(table) if collapsed else self.tables[table]
        return RowCounts(len(rows), len({row.key() for row in rows}))

    def count_events(self) -> int:
        return self._counts("events", True).distinct

    @staticmethod
    def _bounded(rows: list) -> list:
        if len(rows) > QUERY_ROWS_MAX:
            raise HistoryError(f"query returned more than QUERY_ROWS_MAX={QUERY_ROWS_MAX} rows; narrow it")
        return rows

    def events_for(self, engineer_id: str) -> list[EventRow]:
        rows = [r for r in self._view("events") if r.engineer_id == engineer_id]
        return self._bounded(sorted(rows, key=_applied_order))

    def late_events(self) -> list[LateEvent]:
        out: dict[tuple[str, str], LateEvent] = {}
        for r in sorted(self._view("events"), key=lambda r: (r.engineer_id, _applied_order(r))):
            if r.late and r.applied_watermark is not None:
                out.setdefault((r.engineer_id, r.event_id),
                               LateEvent(r.engineer_id, r.event_id, r.applied_watermark, r.applied_seq))
        return self._bounded(list(out.values()))

    def postings_for(self, engineer_id: str) -> list[PostingRow]:
        rows = [r for r in self._view("postings") if r.engineer_id == engineer_id]
        return self._bounded(sorted(rows, key=lambda r: (r.seq, r.hash)))

    def postings_by_period(self, period: str, engineer_id: str | None = None) -> list[PostingRow]:
        start, end = period_bounds(period)
        rows = [
            r
            for r in self._view("postings")
            if start <= r.event_time < end and (engineer_id is None or r.engineer_id == engineer_id)
        ]
        return self._bounded(sorted(rows, key=lambda r: (r.engineer_id, r.seq, r.hash)))

    def engineers(self) -> list[str]:
        return sorted({r.engineer_id for r in self.tables["postings"]})

    def chain_heads(self, before: datetime) -> list[ChainHead]:
        heads: dict[str, PostingRow] = {}
        for row in self._view("postings"):
            if row.event_time >= before:
                continue
            best = heads.get(row.engineer_id)
            if best is None or (row.seq, row.hash) > (best.seq, best.hash):
                heads[row.engineer_id] = row
        return [ChainHead(e, heads[e].seq, heads[e].hash) for e in sorted(heads)]

    def digests(self, period: str | None = None) -> list[DigestRow]:
        rows = [r for r in self.tables["digests"] if period is None or r.period == period]
        return sorted(rows, key=lambda r: (r.computed_at, r.period, r.digest))

    def final_through(self, partition: int, at: datetime | None = None) -> WatermarkRow | None:
        rows = [r for r in self.tables["watermarks"]
                if r.partition == partition and (at is None or r.final_through <= at)]
        return max(rows, key=lambda r: (r.final_through, r.stream_time), default=None)

    def offset_max(self, table: str, topic: str, partition: int) -> int:
        if table not in ("events", "dead_letters"):
            raise HistoryError(f"no Kafka offsets in table {table!r}")
        offsets = [r.kafka_offset for r in self.tables[table]
                   if r.kafka_topic == topic and r.kafka_partition == partition]
        return max(offsets, default=-1)

    def posting_seq_max(self, engineer_ids: list[str]) -> dict[str, int]:
        wanted, out = set(engineer_ids), dict[str, int]()
        for p in self.tables["postings"]:
            if p.engineer_id in wanted and p.seq > out.get(p.engineer_id, 0):
                out[p.engineer_id] = p.seq
        return out

    def table_counts(self) -> dict[str, int]:
        return {t: len(self._view(t)) for t in TABLE_ROW_TYPES}

    def event_payloads(self, after: EventCoord, limit: int) -> list[StoredPayload]:
        if not 0 < limit <= QUERY_ROWS_MAX:
            raise HistoryError(f"limit must be 1..{QUERY_ROWS_MAX}")
        # Same order and collapse as the SQL: FINAL, then one row per coordinate.
        rows = sorted((r for r in self._view("events")
                       if (r.kafka_topic, r.kafka_partition, r.kafka_offset) > after),
                      key=lambda r: (r.kafka_topic, r.kafka_partition, r.kafka_offset, r.event_id))
        out: list[StoredPayload] = []
        for r in rows:
            coord = (r.kafka_topic, r.kafka_partition, r.kafka_offset)
            if out and out[-1].coord == coord:
                continue
            if len(out) == limit:
                break
            out.append(StoredPayload(*coord, r.payload))
        return out

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise HistoryError("the memory:// history cannot run SQL: reports and queries need "
                           "a ClickHouse history (chdb:// or http(s)://)")

    def close(self) -> None:
        self._closed = True

    # -- inspection for tests, the benchmarks and the runbook (not HistoryStore)
    def applied_migrations(self) -> list[int]:
        return sorted(self._migrations)

    def optimize(self) -> None:
        for table in _COLLAPSING:
            self.tables[table] = self._collapsed(table)

    def event_counts(self, *, collapsed: bool) -> RowCounts:
        return self._counts("events", collapsed)

    def posting_counts(self, *, collapsed: bool) -> RowCounts:
        return self._counts("postings", collapsed)

    def dead_letters(self, stage: str | None = None, limit: int = 1000) -> list[DeadLetterRow]:
        if not 0 < limit <= QUERY_ROWS_MAX:
            raise HistoryError(f"limit must be 1..{QUERY_ROWS_MAX}")
        rows = [r for r in self._view("dead_letters") if stage is None or r.stage == stage]
        rows.sort(key=lambda r: (r.received_at, r.kafka_topic, r.kafka_partition, r.kafka_offset, r.stage))
        return rows[:limit]

    def leaderboard_windows(self, window_kind: str, window_start: datetime) -> list[LeaderboardWindowRow]:
        rows = [
            r
            for r in self._view("leaderboard_windows")
            if r.window_kind == window_kind and r.window_start == window_start
        ]
        return sorted(rows, key=lambda r: (r.dimension, r.revision, r.rank))

    def event_id_counts(self) -> RowCounts:
        rows = self.tables["events"]
        return RowCounts(len(rows), len({r.event_id for r in rows}))


def _applied_order(r: EventRow) -> tuple:
    """An engineer's events in the order the worker applied them (the SQL's
    clickhouse._EVENT_ORDER): rows from before applied_seq first, in ingest order."""
    return (r.applied_seq is not None, r.applied_seq or 0, r.ingest_time, r.kafka_topic, r.kafka_partition,
            r.kafka_offset, r.event_id)
