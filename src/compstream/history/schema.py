"""Versioned DDL for the history database; identical on chdb and a server.

Each migration is a list of statements, each idempotent on its own
(`IF NOT EXISTS`), so a crash halfway through a migration is repaired by
running `migrate()` again. A version is recorded in `schema_migrations` only
after all its statements succeeded.

Why ReplacingMergeTree and the dedup window on every table: see
docs/auditing.md, "Exactly once". In short, the per-insert
`insert_deduplication_token` drops an identical retried batch at insert time
(needs `non_replicated_deduplication_window` > 0 on non-replicated tables, it
is 0 by default), and the Replacing engine plus `FINAL` at query time
collapses rows of a differently cut re-batch that the token cannot recognise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import get_args, get_type_hints

from compstream.history.rows import EventRow

# Hashes of the last N insert blocks kept per table. A retry older than this
# many later inserts is no longer recognised by the token (FINAL still is).
DEDUP_WINDOW_BLOCKS = 10_000
_TABLE_SETTINGS = f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW_BLOCKS}"
_UTC = "DateTime64(6, 'UTC')"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


BOOTSTRAP = (
    "CREATE DATABASE IF NOT EXISTS {db}",
    f"""CREATE TABLE IF NOT EXISTS {{db}}.schema_migrations (
    version UInt32,
    name String,
    applied_at {_UTC}
) ENGINE = MergeTree ORDER BY version {_TABLE_SETTINGS}""",
)

_EVENTS = f"""CREATE TABLE IF NOT EXISTS {{db}}.events (
    type LowCardinality(String),
    event_id String,
    engineer_id String,
    event_time {_UTC},
    grant_id Nullable(String),
    amount_nanos Nullable(Int64),
    expires_at Nullable({_UTC}),
    grant_kind Nullable(String),
    provider Nullable(String),
    model Nullable(String),
    input_tokens Nullable(Int64),
    output_tokens Nullable(Int64),
    cache_read_tokens Nullable(Int64),
    cache_write_tokens Nullable(Int64),
    cost_nanos Nullable(Int64),
    unpriced_reason Nullable(String),
    price_version Nullable(String),
    corrects_event_id Nullable(String),
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    ingest_time {_UTC},
    schema_version UInt16,
    late Bool,
    payload String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (engineer_id, event_time, event_id, kafka_topic, kafka_partition, kafka_offset)
{_TABLE_SETTINGS}"""

_POSTINGS = f"""CREATE TABLE IF NOT EXISTS {{db}}.postings (
    engineer_id String,
    seq UInt64,
    kind LowCardinality(String),
    grant_id Nullable(String),
    amount_nanos Int64,
    cause_event_id String,
    event_time {_UTC},
    available_after_nanos Int64,
    prev_hash String,
    hash String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (engineer_id, event_time, seq, hash)
{_TABLE_SETTINGS}"""

_DEAD_LETTERS = f"""CREATE TABLE IF NOT EXISTS {{db}}.dead_letters (
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    raw String,
    error String,
    stage LowCardinality(String),
    received_at {_UTC}
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (kafka_topic, kafka_partition, kafka_offset, stage)
{_TABLE_SETTINGS}"""

_LEADERBOARD_WINDOWS = f"""CREATE TABLE IF NOT EXISTS {{db}}.leaderboard_windows (
    window_kind LowCardinality(String),
    window_start {_UTC},
    dimension LowCardinality(String),
    rank UInt32,
    subject String,
    value Int64,
    tokens Int64,
    closed_at {_UTC}
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_kind, dimension, window_start, rank)
{_TABLE_SETTINGS}"""

# Plain MergeTree on purpose: every digest computation is kept as evidence.
_DIGESTS = f"""CREATE TABLE IF NOT EXISTS {{db}}.digests (
    period String,
    digest String,
    engineers UInt64,
    postings UInt64,
    computed_at {_UTC}
) ENGINE = MergeTree
PARTITION BY toYYYYMM(computed_at)
ORDER BY (period, computed_at, digest)
{_TABLE_SETTINGS}"""

# The ClickHouse type of a row field, from its Python type; the columns
# whose type is narrower than the rule are named here.
_COLUMN_TYPES = {str: "String", int: "Int64", bool: "Bool", datetime: _UTC}
_EVENT_COLUMN_TYPES = {
    "type": "LowCardinality(String)",
    "kafka_topic": "LowCardinality(String)",
    "kafka_partition": "Int32",
    "schema_version": "UInt16",
}


def event_column_type(name: str) -> str:
    """The events table's type of EventRow field `name` (the DDL below is
    checked against it: tests/domain/test_event_shapes.py)."""
    if name in _EVENT_COLUMN_TYPES:
        return _EVENT_COLUMN_TYPES[name]
    hint = get_type_hints(EventRow)[name]
    kinds = [k for k in get_args(hint) if k is not type(None)] or [hint]
    column = _COLUMN_TYPES[kinds[0]]
    return f"Nullable({column})" if len(kinds) < len(get_args(hint)) else column


def add_event_columns(*names: str) -> tuple[str, ...]:
    """Statements adding EventRow fields `names` to the events table (how a
    new event field reaches the table: a migration of these)."""
    return tuple(f"ALTER TABLE {{db}}.events ADD COLUMN IF NOT EXISTS {name} {event_column_type(name)}"
                 for name in names)


# HR events (team membership, leaderboard privacy, cash pay) arrived after v1.
_HR_COLUMNS = add_event_columns("team_id", "opted_out", "annual_cash_nanos")

# The watermark each event was applied under (audit verify replays late events).
_APPLIED_WATERMARK = add_event_columns("applied_watermark")

# The order the worker applied each engineer's events in (audit verify replays it).
_APPLIED_SEQ = add_event_columns("applied_seq")

# Finality per source partition (rows.WatermarkRow): what statements call final.
_WATERMARKS = (f"""CREATE TABLE IF NOT EXISTS {{db}}.watermarks (
    partition Int32,
    final_through {_UTC},
    stream_time {_UTC}
) ENGINE = ReplacingMergeTree
ORDER BY (partition, final_through)
{_TABLE_SETTINGS}""",)

# Leaderboard revisions (late adjustments): every revision of a closed board
# is kept, so the revision joins the sort key (ClickHouse extends a sorting
# key only with a column added in the same ALTER, and without a DEFAULT;
# rows from before read 0, the UInt32 default; re-running it is a no-op).
_LEADERBOARD_REVISION = (
    "ALTER TABLE {db}.leaderboard_windows ADD COLUMN IF NOT EXISTS revision UInt32, "
    "MODIFY ORDER BY (window_kind, dimension, window_start, rank, revision)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "history tables", (_EVENTS, _POSTINGS, _DEAD_LETTERS, _LEADERBOARD_WINDOWS, _DIGESTS)),
    Migration(2, "HR event columns", _HR_COLUMNS),
    Migration(3, "applied watermark of events", _APPLIED_WATERMARK),
    Migration(4, "watermarks (finality per partition)", _WATERMARKS),
    Migration(5, "leaderboard window revisions", _LEADERBOARD_REVISION),
    Migration(6, "applied order of events", _APPLIED_SEQ),
)


def check_migrations(migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
    """Versions must be 1..n in order; a reused number would skip DDL."""
    for index, migration in enumerate(migrations, start=1):
        if migration.version != index:
            raise ValueError(f"migration #{index} has version {migration.version}")
        if not migration.statements:
            raise ValueError(f"migration {migration.version} has no statements")


def render(statement: str, database: str) -> str:
    if not database.isidentifier():
        raise ValueError(f"database name must be an identifier, got {database!r}")
    return statement.replace("{db}", database)
