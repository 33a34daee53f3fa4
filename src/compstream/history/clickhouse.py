"""ClickHouse adapter (clickhouse-connect): chdb embedded or an HTTP server.

The same SQL runs on both; only the DSN differs. chdb is in-process and
allows one engine path per process, so clients are cached per DSN and shared
by every store opened in the process; the last `close()` releases it.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timezone
from operator import attrgetter
from typing import Any

import clickhouse_connect

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
    utc,
)

# Explicit per insert: chdb defaults async_insert to 1, and async inserts
# deduplicate differently (and late); we want the synchronous block path.
_INSERT_SETTINGS = {"async_insert": 0, "insert_deduplicate": 1}
_KEY_EXPRESSIONS = {
    "events": "kafka_topic, kafka_partition, kafka_offset, event_id",
    "postings": "engineer_id, seq, hash",
}
# (store.HistoryStore.events_for): rows from before applied_seq first, in ingest order.
_EVENT_ORDER = ("isNotNull(applied_seq), applied_seq, ingest_time, kafka_topic, kafka_partition, kafka_offset, "
                "event_id")

_lock = threading.Lock()
_clients: dict[str, list] = {}  # dsn -> [client, reference count]


class _SerializedClient:
    """One shared client per DSN, one call at a time: the worker's history sink
    and the leaderboard stage write from different executor threads, and the
    embedded engine's client is not documented as thread-safe."""

    def __init__(self, client: Any):
        self._client = client
        self._call_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._call_lock:
                return attr(*args, **kwargs)

        return locked


def _acquire(dsn: str) -> Any:
    with _lock:
        entry = _clients.get(dsn)
        if entry is None:
            # "aware" so DateTime64('UTC') columns come back as aware datetimes.
            client = _SerializedClient(clickhouse_connect.get_client(dsn=dsn, tz_mode="aware"))
            entry = _clients[dsn] = [client, 0]
        entry[1] += 1
        return entry[0]


def _release(dsn: str) -> None:
    with _lock:
        entry = _clients.get(dsn)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _clients[dsn]
            entry[0].close()


def _columns(row_type: type) -> list[str]:
    return [f.name for f in dataclasses.fields(row_type)]


def _ts(value: datetime) -> str:
    """Parameter text for DateTime64(6, 'UTC'); avoids client tz guessing."""
    return utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")


class ClickHouseHistoryStore:
    def __init__(self, dsn: str, *, database: str = "compstream"):
        schema.render("", database)  # validates the name before any SQL
        self._dsn = dsn
        self._db = database
        self._client = _acquire(dsn)
        self._closed = False

    # -- schema -------------------------------------------------------------
    def migrate(self) -> list[int]:
        schema.check_migrations()
        for statement in schema.BOOTSTRAP:
            self._client.command(schema.render(statement, self._db))
        done = set(self.applied_migrations())
        applied = []
        for migration in schema.MIGRATIONS:
            if migration.version in done:
                continue
            for statement in migration.statements:
                self._client.command(schema.render(statement, self._db))
            # Token so two processes migrating at once record a version once.
            self._client.insert(
                f"{self._db}.schema_migrations",
                [[migration.version, migration.name, datetime.now(timezone.utc)]],
                column_names=["version", "name", "applied_at"],
                settings={**_INSERT_SETTINGS, "insert_deduplication_token": f"migration:{migration.version}"},
            )
            applied.append(migration.version)
        return applied

    # -- writes -------------------------------------------------------------
    def append_batch(self, batch: HistoryBatch, dedup_token: str) -> None:
        self._check_open()
        for table, rows in batch.by_table.items():
            token = table_token(dedup_token, table)  # validates even when empty
            if not rows:
                continue
            columns = _columns(TABLE_ROW_TYPES[table])
            # Column-oriented: the client would otherwise transpose the rows
            # itself, on the same thread (and under the GIL the worker needs).
            data = [list(map(attrgetter(name), rows)) for name in columns]
            self._client.insert(
                f"{self._db}.{table}",
                data,
                column_names=columns,
                column_oriented=True,
                settings={**_INSERT_SETTINGS, "insert_deduplication_token": token},
            )

    # -- reads --------------------------------------------------------------
    def _select(self, row_type: type, sql: str, parameters: dict | None = None) -> list:
        result = self._client.query(
            sql, parameters=parameters or {}, column_formats={"raw": "bytes"} if row_type is DeadLetterRow else None
        )
        rows = result.result_rows
        if len(rows) > QUERY_ROWS_MAX:
            raise HistoryError(f"query returned more than QUERY_ROWS_MAX={QUERY_ROWS_MAX} rows; narrow it")
        out = []
        for values in rows:
            fixed = [utc(v) if isinstance(v, datetime) else v for v in values]
            out.append(row_type(*fixed))
        return out

    def _from(self, table: str, final: bool = True) -> str:
        columns = ", ".join(_columns(TABLE_ROW_TYPES[table]))
        return f"SELECT {columns} FROM {self._db}.{table}{' FINAL' if final else ''}"

    def _counts(self, table: str, collapsed: bool) -> RowCounts:
        final = " FINAL" if collapsed else ""
        row = self._client.query(
            f"SELECT count(), uniqExact({_KEY_EXPRESSIONS[table]}) FROM {self._db}.{table}{final}"
        ).result_rows[0]
        return RowCounts(int(row[0]), int(row[1]))

    def count_events(self) -> int:
        return self._counts("events", collapsed=True).distinct

    def events_for(self, engineer_id: str) -> list[EventRow]:
        sql = (
            f"{self._from('events')} WHERE engineer_id = {{e:String}} "
            f"ORDER BY {_EVENT_ORDER} LIMIT {QUERY_ROWS_MAX + 1}"
        )
        return self._select(EventRow, sql, {"e": engineer_id})

    def late_events(self) -> list[LateEvent]:
        rows = self._client.query(
            f"SELECT engineer_id, event_id, applied_watermark, applied_seq FROM {self._db}.events FINAL "
            f"WHERE late AND applied_watermark IS NOT NULL ORDER BY engineer_id, {_EVENT_ORDER} "
            f"LIMIT 1 BY engineer_id, event_id LIMIT {QUERY_ROWS_MAX + 1}").result_rows
        if len(rows) > QUERY_ROWS_MAX:
            raise HistoryError(f"query returned more than QUERY_ROWS_MAX={QUERY_ROWS_MAX} rows; narrow it")
        return [LateEvent(r[0], r[1], utc(r[2]), None if r[3] is None else int(r[3])) for r in rows]

    def postings_for(self, engineer_id: str) -> list[PostingRow]:
        sql = f"{self._from('postings')} WHERE engineer_id = {{e:String}} ORDER BY seq, hash LIMIT {QUERY_ROWS_MAX + 1}"
        return self._select(PostingRow, sql, {"e": engineer_id})

    def postings_by_period(self, period: str, engineer_id: str | None = None) -> list[PostingRow]:
        start, end = period_bounds(period)
        where = "event_time >= {s:DateTime64(6, 'UTC')} AND event_time < {t:DateTime64(6, 'UTC')}"
        params: dict[str, Any] = {"s": _ts(start), "t": _ts(end)}
        if engineer_id is not None:
            where += " AND engineer_id = {e:String}"
            params["e"] = engineer_id
        sql = f"{self._from('postings')} WHERE {where} ORDER BY engineer_id, seq, hash LIMIT {QUERY_ROWS_MAX + 1}"
        return self._select(PostingRow, sql, params)

    def engineers(self) -> list[str]:
        rows = self._client.query(f"SELECT DISTINCT engineer_id FROM {self._db}.postings ORDER BY engineer_id")
        return [r[0] for r in rows.result_rows]

    def chain_heads(self, before: datetime) -> list[ChainHead]:
        rows = self._client.query(
            f"SELECT engineer_id, max(seq), argMax(hash, (seq, hash)) FROM {self._db}.postings FINAL "
            "WHERE event_time < {b:DateTime64(6, 'UTC')} GROUP BY engineer_id ORDER BY engineer_id",
            parameters={"b": _ts(before)},
        )
        return [ChainHead(r[0], int(r[1]), r[2]) for r in rows.result_rows]

    def digests(self, period: str | None = None) -> list[DigestRow]:
        where = "" if period is None else " WHERE period = {p:String}"
        sql = f"{self._from('digests', final=False)}{where} ORDER BY computed_at, period, digest"
        return self._select(DigestRow, sql, {"p": period} if period is not None else None)

    def final_through(self, partition: int, at: datetime | None = None) -> WatermarkRow | None:
        where = "partition = {p:Int32}" + ("" if at is None else " AND final_through <= {t:DateTime64(6, 'UTC')}")
        params: dict = {"p": partition}
        if at is not None:
            params["t"] = _ts(at)
        rows = self._select(WatermarkRow, f"{self._from('watermarks')} WHERE {where} "
                                          "ORDER BY final_through DESC, stream_time DESC LIMIT 1", params)
        return rows[0] if rows else None

    # -- high-water marks for the worker's sink -------------------------------
    def offset_max(self, table: str, topic: str, partition: int) -> int:
        if table not in ("events", "dead_letters"):
            raise HistoryError(f"no Kafka offsets in table {table!r}")
        row = self._client.query(
            f"SELECT max(kafka_offset), count() FROM {self._db}.{table} "
            "WHERE kafka_topic = {t:String} AND kafka_partition = {p:Int32}",
            parameters={"t": topic, "p": partition},
        ).result_rows[0]
        return int(row[0]) if row[1] else -1

    def posting_seq_max(self, engineer_ids: list[str]) -> dict[str, int]:
        if not engineer_ids:
            return {}
        rows = self._client.query(
            f"SELECT engineer_id, max(seq) FROM {self._db}.postings "
            "WHERE engineer_id IN {e:Array(String)} GROUP BY engineer_id",
            parameters={"e": list(engineer_ids)},
        ).result_rows
        return {r[0]: int(r[1]) for r in rows}

    def table_counts(self) -> dict[str, int]:
        out = {}
        for table in ("events", "postings", "dead_letters", "leaderboard_windows", "digests", "watermarks"):
            final = "" if table == "digests" else " FINAL"
            out[table] = int(self._client.query(f"SELECT count() FROM {self._db}.{table}{final}").result_rows[0][0])
        return out

    # -- listing (replay from the history) ------------------------------------
    def event_payloads(self, after: EventCoord, limit: int) -> list[StoredPayload]:
        if not 0 < limit <= QUERY_ROWS_MAX:
            raise HistoryError(f"limit must be 1..{QUERY_ROWS_MAX}")
        # Keyset on the Kafka coordinates; FINAL collapses retries, LIMIT 1 BY a
        # coordinate stored under two sort keys (event_id breaks the tie).
        rows = self._client.query(
            f"SELECT kafka_topic, kafka_partition, kafka_offset, payload FROM {self._db}.events FINAL "
            "WHERE (kafka_topic, kafka_partition, kafka_offset) > ({t:String}, {p:Int32}, {o:Int64}) "
            "ORDER BY kafka_topic, kafka_partition, kafka_offset, event_id "
            f"LIMIT 1 BY kafka_topic, kafka_partition, kafka_offset LIMIT {int(limit)}",
            parameters={"t": after[0], "p": after[1], "o": after[2]},
        ).result_rows
        return [StoredPayload(r[0], int(r[1]), int(r[2]), r[3]) for r in rows]

    # -- queries for reports and auditors' SQL --------------------------------
    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._client.query(sql, parameters=parameters or {}).result_rows
        return rows

    @property
    def database(self) -> str:
        return self._db

    def _check_open(self) -> None:
        if self._closed:
            raise HistoryError("history store is closed")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self._dsn)

    # -- inspection for tests, the benchmarks and the runbook (not HistoryStore)
    def applied_migrations(self) -> list[int]:
        exists = self._client.query(
            "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'schema_migrations'",
            parameters={"db": self._db},
        ).result_rows[0][0]
        if not exists:
            return []
        rows = self._client.query(f"SELECT DISTINCT version FROM {self._db}.schema_migrations ORDER BY version")
        return [int(r[0]) for r in rows.result_rows]

    def optimize(self) -> None:
        for table in TABLE_ROW_TYPES:
            self._client.command(f"OPTIMIZE TABLE {self._db}.{table} FINAL")

    def event_counts(self, *, collapsed: bool) -> RowCounts:
        return self._counts("events", collapsed)

    def posting_counts(self, *, collapsed: bool) -> RowCounts:
        return self._counts("postings", collapsed)

    def dead_letters(self, stage: str | None = None, limit: int = 1000) -> list[DeadLetterRow]:
        if not 0 < limit <= QUERY_ROWS_MAX:
            raise HistoryError(f"limit must be 1..{QUERY_ROWS_MAX}")
        where = "" if stage is None else " WHERE stage = {st:String}"
        # LIMIT 1 BY: FINAL only collapses inside one partition (month of
        # received_at); this collapses retries across partitions too.
        sql = (
            f"{self._from('dead_letters')}{where} "
            "ORDER BY received_at, kafka_topic, kafka_partition, kafka_offset, stage "
            f"LIMIT 1 BY kafka_topic, kafka_partition, kafka_offset, stage LIMIT {int(limit)}"
        )
        return self._select(DeadLetterRow, sql, {"st": stage} if stage is not None else None)

    def leaderboard_windows(self, window_kind: str, window_start: datetime) -> list[LeaderboardWindowRow]:
        sql = (
            f"{self._from('leaderboard_windows')} WHERE window_kind = {{k:String}} "
            "AND window_start = {s:DateTime64(6, 'UTC')} ORDER BY dimension, revision, rank"
        )
        return self._select(LeaderboardWindowRow, sql, {"k": window_kind, "s": _ts(window_start)})

    def event_id_counts(self) -> RowCounts:
        row = self._client.query(f"SELECT count(), uniqExact(event_id) FROM {self._db}.events").result_rows[0]
        return RowCounts(int(row[0]), int(row[1]))

    def command(self, sql: str, settings: dict | None = None) -> None:
        self._client.command(sql, settings=settings or {})

