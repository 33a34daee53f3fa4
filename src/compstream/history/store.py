"""The history store interface and the one function that picks an adapter.

Callers depend on `HistoryStore` only. `open_history(dsn)` maps a DSN to an
adapter: `memory://` for pure tests, `chdb://` (embedded engine) and
`http(s)://` (a ClickHouse server) for ClickHouse through clickhouse-connect.

The protocol lists what the package's callers use, nothing else. The adapters
also carry inspection helpers for tests, the benchmarks and the runbook
(`event_counts`, `posting_counts`, `event_id_counts`, `dead_letters`,
`leaderboard_windows`, `applied_migrations`, `optimize`); those are not part
of the interface.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from compstream.history.rows import (
    ChainHead,
    DigestRow,
    EventCoord,
    EventRow,
    HistoryBatch,
    HistoryError,
    LateEvent,
    LeaderboardWindowRow,
    PostingRow,
    StoredPayload,
    WatermarkRow,
)


class HistoryStore(Protocol):
    # -- schema and writes (the worker, the sink, `audit digest`) -------------
    def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied (empty if none)."""

    def append_batch(self, batch: HistoryBatch, dedup_token: str) -> None:
        """Append every row of `batch`. Replaying the same batch with the same
        token stores nothing new (insert deduplication); a differently cut
        re-batch is collapsed at query time (see docs/auditing.md)."""

    # -- high-water marks for the worker's sink -------------------------------
    def offset_max(self, table: str, topic: str, partition: int) -> int:
        """Highest Kafka offset stored in `table` ('events' or 'dead_letters')
        for one topic-partition, -1 if none: the sink's high-water mark."""

    def posting_seq_max(self, engineer_ids: list[str]) -> dict[str, int]:
        """Highest stored posting seq per engineer (absent = none stored)."""

    # -- reads for the verifier and reports -----------------------------------
    def count_events(self) -> int:
        """Distinct stored events (retry duplicates collapsed)."""

    def events_for(self, engineer_id: str) -> list[EventRow]:
        """Engineer's events in the order the worker applied them (`applied_seq`,
        then ingest time, topic, partition, offset); rows stored before
        applied_seq was recorded come first, in ingest order."""

    def postings_for(self, engineer_id: str) -> list[PostingRow]:
        """Engineer's postings ordered by seq (then hash, for forged duplicates)."""

    def late_events(self) -> list[LateEvent]:
        """Every event applied late with its recorded watermark (rows stored
        before it was recorded are left out), by engineer, each engineer's in
        the order of `events_for`; one per event."""

    def postings_by_period(self, period: str, engineer_id: str | None = None) -> list[PostingRow]:
        """Postings whose event_time falls in the UTC month 'YYYY-MM'."""

    def engineers(self) -> list[str]:
        """Every engineer with at least one posting, sorted."""

    def chain_heads(self, before: datetime) -> list[ChainHead]:
        """Per engineer, the highest-seq posting with event_time < before."""

    def digests(self, period: str | None = None) -> list[DigestRow]:
        """Every stored digest computation, oldest first."""

    def final_through(self, partition: int, at: datetime | None = None) -> WatermarkRow | None:
        """The partition's latest watermark row (with `at`: the latest whose
        final_through is at or before `at`); None if none was written."""

    def leaderboard_windows(self, window_kind: str, window_start: datetime) -> list[LeaderboardWindowRow]:
        """Every stored row (all dimensions and revisions) of one closed window."""

    def table_counts(self) -> dict[str, int]:
        """Distinct rows per history table (after retry collapse)."""

    # -- listing (replay from the history) ------------------------------------
    def event_payloads(self, after: EventCoord, limit: int) -> list[StoredPayload]:
        """Up to `limit` stored events after `after` in Kafka coordinate order,
        one per coordinate (retry duplicates collapsed): a keyset page."""

    # -- queries (reports, auditors' SQL) --------------------------------------
    @property
    def database(self) -> str:
        """The database whose tables `query_rows` SQL names."""

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a ClickHouse SQL query. An adapter without an SQL engine
        (memory://) raises HistoryError saying so."""

    def close(self) -> None: ...


def open_history(dsn: str, *, database: str = "compstream") -> HistoryStore:
    """DSN -> adapter. The caller owns the store and must `close()` it."""
    if dsn.startswith("memory://"):
        from compstream.history.memory import MemoryHistoryStore

        return MemoryHistoryStore(database=database)
    if dsn.startswith(("chdb://", "chdb:", "http://", "https://")):
        from compstream.history.clickhouse import ClickHouseHistoryStore

        return ClickHouseHistoryStore(dsn, database=database)
    raise HistoryError(f"unsupported history DSN {dsn!r}: use memory://, chdb://, http(s)://")
