"""Append-only audit history (ClickHouse) of events, postings and digests.

Use `open_history(dsn)` to get a `HistoryStore`; see docs/auditing.md.
"""

from compstream.history.rows import (
    BATCH_ROWS_MAX,
    ChainHead,
    DeadLetterRow,
    DigestRow,
    EventRow,
    HistoryBatch,
    HistoryError,
    LeaderboardWindowRow,
    PostingRow,
    RowCounts,
    kafka_batch_token,
    period_bounds,
)
from compstream.history.store import HistoryStore, open_history

__all__ = [
    "BATCH_ROWS_MAX",
    "ChainHead",
    "DeadLetterRow",
    "DigestRow",
    "EventRow",
    "HistoryBatch",
    "HistoryError",
    "HistoryStore",
    "LeaderboardWindowRow",
    "PostingRow",
    "RowCounts",
    "kafka_batch_token",
    "open_history",
    "period_bounds",
]
