"""The history store interface and the one function that picks an adapter.

Callers depend on `HistoryStore` only. `open_history(dsn)` maps a DSN to an
adapter: `memory://` for pure tests, `chdb://` (embedded engine) and
`http(s)://` (a ClickHouse server) for ClickHouse through clickhouse-connect.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple, Protocol, runtime_checkable

from compstream.history.rows import (
    DeadLetterRow,
    DigestRow,
    EventRow,
    HistoryBatch,
    HistoryError,
    LeaderboardWindowRow,
    PostingRow,
)

# Query helpers return lists; an unbounded read could exhaust memory.
QUERY_ROWS_MAX = 1_000_000


class RowCounts(NamedTuple):
    """Physical rows vs distinct identities; equal means no duplicate stored."""

    rows: int
    distinct: int


class ChainHead(NamedTuple):
    engineer_id: str
    seq: int
    hash: str


@runtime_checkable
class HistoryStore(Protocol):
    def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied (empty if none)."""

    def applied_migrations(self) -> list[int]: ...

    def append_batch(self, batch: HistoryBatch, dedup_token: str) -> None:
        """Append every row of `batch`. Replaying the same batch with the same
        token stores nothing new (insert deduplication); a differently cut
        re-batch is collapsed at query time (see docs/auditing.md)."""

    def count_events(self) -> int:
        """Distinct stored events (retry duplicates collapsed)."""

    def event_counts(self, *, collapsed: bool) -> RowCounts:
        """(rows, distinct event keys), physical or after query-time collapse."""

    def posting_counts(self, *, collapsed: bool) -> RowCounts: ...

    def events_for(self, engineer_id: str) -> list[EventRow]:
        """Engineer's events in stored order (ingest time, topic, partition, offset)."""

    def postings_for(self, engineer_id: str) -> list[PostingRow]:
        """Engineer's postings ordered by seq (then hash, for forged duplicates)."""

    def postings_by_period(self, period: str, engineer_id: str | None = None) -> list[PostingRow]:
        """Postings whose event_time falls in the UTC month 'YYYY-MM'."""

    def engineers(self) -> list[str]:
        """Every engineer with at least one posting, sorted."""

    def chain_heads(self, before: datetime) -> list[ChainHead]:
        """Per engineer, the highest-seq posting with event_time < before."""

    def dead_letters(self, stage: str | None = None, limit: int = 1000) -> list[DeadLetterRow]: ...

    def leaderboard_windows(self, window_kind: str, window_start: datetime) -> list[LeaderboardWindowRow]: ...

    def digests(self, period: str | None = None) -> list[DigestRow]:
        """Every stored digest computation, oldest first."""

    def offset_max(self, table: str, topic: str, partition: int) -> int:
        """Highest Kafka offset stored in `table` ('events' or 'dead_letters')
        for one topic-partition, -1 if none: the sink's high-water mark."""

    def posting_seq_max(self, engineer_ids: list[str]) -> dict[str, int]:
        """Highest stored posting seq per engineer (absent = none stored)."""

    def table_counts(self) -> dict[str, int]:
        """Distinct rows per history table (after retry collapse)."""

    def event_id_counts(self) -> RowCounts:
        """(count(), uniqExact(event_id)) over the physical events table."""

    def optimize(self) -> None:
        """Force the engine to collapse retry duplicates physically."""

    def close(self) -> None: ...


def open_history(dsn: str, *, database: str = "compstream") -> HistoryStore:
    """DSN -> adapter. The caller owns the store and must `close()` it."""
    if dsn.startswith("memory://"):
        from compstream.history.memory import MemoryHistoryStore

        return MemoryHistoryStore()
    if dsn.startswith(("chdb://", "chdb:", "http://", "https://")):
        from compstream.history.clickhouse import ClickHouseHistoryStore

        return ClickHouseHistoryStore(dsn, database=database)
    raise HistoryError(f"unsupported history DSN {dsn!r}: use memory://, chdb://, http(s)://")
