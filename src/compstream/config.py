"""Settings from the environment: the one place a deployment is described.

Every knob has an embedded default so `make demo` needs no configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

# The most one engineer's book may hold (its packed bytes; ~7x that as Python
# objects while cached). A book of 64 KiB or more goes to the changelog as a
# head and parts of at most 512 KiB (worker/book_parts.py), so this is not
# bound by the broker's 1 MiB record limit. 2 MiB: ~40,000 usage events a
# day for one engineer at 6 h lateness, ~5,000 at 48 h (docs/runbook.md).
BOOK_BYTES_MAX = 2 * 1024 * 1024
# How far a usage event's time may be ahead of its Kafka record's timestamp
# before the worker refuses it (a `future` dead letter). Usage cannot be
# published before it happened, and usage moves stream time: one event with a
# wrong date would finalize every engineer of its partition up to that date.
# 15 min allows for clocks that disagree and refuses a time zone error of an hour.
USAGE_AHEAD_S_MAX = 900
# Live books kept between batches (worker/book_cache.py): a batch takes a
# cached book instead of deserializing it (~18 us a 2 KB book, more for
# big ones). A live book is ~7 times its bytes in Python objects, so the
# bytes bound is the memory knob: 32 MiB of books' bytes is ~220 MB.
BOOK_CACHE_BOOKS_MAX = 10_000
BOOK_CACHE_BYTES_MAX = 32 * 1024 * 1024
# = domain/leaderboard/config.py DEFAULT_RETENTION (a test keeps them equal);
# the month's board then outlives the following month.
LEADERBOARD_RETENTION_DAYS_DEFAULT = 35
# Events per batch (checkpoint). The per-book outputs (a changelog record and
# a balance per touched book) and the sweep amortize over the batch: at 10,000
# engineers the core's CPU per event fell ~25 % from 5,000 to 20,000
# (bench/profile_notes.md). A batch also closes on time, so light load keeps
# small, fast batches. The transactional engine takes 120,000: a backlog's
# batch touches nearly every book whatever its size past ~40,000 (10,000
# engineers), so each book is written once per batch, and fewer batches mean
# fewer book writes, balances and changelog bytes. Measured (alternated 1M-event
# runs, bench/profile_notes.md): 40,000 -> 80,000 -> 120,000 took the rebuild
# from spawn 1.11-1.12x and then 1.13-1.18x faster, for a peak RSS of 475 ->
# 645 -> 820 MiB; in-process the step's CPU per event fell 15-20 %. A batch
# also closes on time, so a live load keeps small batches (the latency is not
# affected). Faust keeps 20,000 (not measured beyond it).
BATCH_EVENTS_MAX = 20_000  # the Faust engine's
BATCH_EVENTS_MAX_TRANSACTIONAL = 120_000


def _data_dir() -> Path:
    return Path(os.environ.get("COMPSTREAM_DATA_DIR", Path.home() / ".local" / "share" / "compstream"))


def _whole(name: str, default: int, unit: str = "") -> int:
    """A whole number >= 0 from the environment; `unit` names it in the error."""
    raw = os.environ.get(name, str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number{unit}, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _on_off(name: str, default: str) -> bool:
    value = os.environ.get(name, default).strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"{name} must be 'on' or 'off', got {value!r}")
    return value == "on"


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Topics:
    usage: str = "compstream.usage"
    grants: str = "compstream.grants"
    balances: str = "compstream.balances"
    alerts: str = "compstream.alerts"
    leaderboards: str = "compstream.leaderboards"
    leaderboard_candidates: str = "compstream.leaderboard-candidates"
    digests: str = "compstream.digests"
    dead_letters: str = "compstream.dead-letters"

    @classmethod
    def with_prefix(cls, prefix: str) -> "Topics":
        """`<prefix>.<name>` for every topic (underscores become dashes)."""
        return cls(**{f.name: f"{prefix}.{f.name.replace('_', '-')}" for f in fields(cls)})

    @property
    def prefix(self) -> str:
        return self.usage.rsplit(".", 1)[0]


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str
    clickhouse_dsn: str
    data_dir: Path
    source_partitions: int
    lateness_s: int
    worker_id: str
    web_port: int
    web_bind: str = "127.0.0.1"
    # Kafka group session timeout: how long a dead or paused worker keeps its
    # partitions before another takes over (the broker's minimum is 6 s).
    session_timeout_s: float = 30.0
    topics: Topics = field(default_factory=Topics)
    # Leaderboards are optional: an employer may not want rankings at all.
    leaderboards_enabled: bool = True
    # Leaderboards (worker/leaderboards/). Both stages use the same k.
    leaderboard_k: int = 100
    # A team is shown only with at least this many contributors in the window.
    leaderboard_min_team: int = 5
    # Publish engineer pseudonyms (HMAC of the id) instead of real ids.
    leaderboard_pseudonyms: bool = False
    # HMAC key for pseudonyms (>= 16 bytes); required when pseudonyms are on.
    leaderboard_secret: str = ""
    # Days a closed (final) board stays served by the web view and on the
    # leaderboards topic after it closes (window end + lateness); then it is
    # tombstoned. History keeps every final board for good. 0 = drop on close.
    leaderboard_retention_days: int = LEADERBOARD_RETENTION_DAYS_DEFAULT
    # Largest book per engineer (its packed bytes, in memory); usage that
    # does not fit becomes a book_full dead letter (worker/processor.py).
    book_bytes_max: int = BOOK_BYTES_MAX
    # Stream engine: "faust" (the original design) or "transactional"
    # (confluent-kafka, one Kafka transaction per batch): worker/engines.
    engine: str = "transactional"
    # Transactional engine: how long a task's usage waits for its HR input to
    # report its end before going on (worker/core/sync.py).
    task_idle_s: float = 5.0
    # "embedded" loads the history topic into this worker's store from a child
    # process of the worker; "external" leaves it to `compstream sink`.
    history_sink: str = "embedded"
    # Transactional engine, the idleness rule: a partition whose inputs are
    # read to their end and quiet this long moves its stream time to the
    # wall clock (its watermark to wall clock - lateness), so a quiet month
    # end becomes final. 0 = off (replaying historical data).
    idle_advance_s: float = 900.0
    # A batch (one checkpoint; one transaction on that engine) closes at this
    # many events, or after the batch time.
    batch_events_max: int = BATCH_EVENTS_MAX_TRANSACTIONAL
    # Usage dated more than this ahead of its Kafka record is refused (above).
    usage_ahead_s_max: int = USAGE_AHEAD_S_MAX
    # The cache of live books between batches (above); 0 turns it off.
    book_cache_books_max: int = BOOK_CACHE_BOOKS_MAX
    book_cache_bytes_max: int = BOOK_CACHE_BYTES_MAX

    @classmethod
    def from_env(cls) -> "Settings":
        data_dir = _data_dir()
        engine = _choice("COMPSTREAM_ENGINE", "transactional", ("transactional", "faust"))
        batch_default = BATCH_EVENTS_MAX if engine == "faust" else BATCH_EVENTS_MAX_TRANSACTIONAL
        return cls(
            kafka_bootstrap=os.environ.get("COMPSTREAM_KAFKA_BOOTSTRAP", "localhost:19092"),
            clickhouse_dsn=os.environ.get(
                "COMPSTREAM_CLICKHOUSE_DSN", f"chdb://{data_dir / 'clickhouse'}"
            ),
            data_dir=data_dir,
            source_partitions=int(os.environ.get("COMPSTREAM_SOURCE_PARTITIONS", "4")),
            lateness_s=int(os.environ.get("COMPSTREAM_LATENESS_S", str(6 * 3600))),
            worker_id=os.environ.get("COMPSTREAM_WORKER_ID", "compstream"),
            web_port=int(os.environ.get("COMPSTREAM_WEB_PORT", "6066")),
            web_bind=os.environ.get("COMPSTREAM_WEB_BIND", "127.0.0.1"),
            session_timeout_s=float(os.environ.get("COMPSTREAM_SESSION_TIMEOUT_S", "30")),
            topics=Topics.with_prefix(os.environ.get("COMPSTREAM_TOPIC_PREFIX", "compstream")),
            leaderboards_enabled=_on_off("COMPSTREAM_LEADERBOARDS", "on"),
            leaderboard_k=int(os.environ.get("COMPSTREAM_LEADERBOARD_K", "100")),
            leaderboard_min_team=int(os.environ.get("COMPSTREAM_LEADERBOARD_MIN_TEAM", "5")),
            leaderboard_pseudonyms=_on_off("COMPSTREAM_LEADERBOARD_PSEUDONYMS", "off"),
            leaderboard_secret=os.environ.get("COMPSTREAM_LEADERBOARD_SECRET", ""),
            leaderboard_retention_days=_whole("COMPSTREAM_LEADERBOARD_RETENTION_DAYS",
                                              LEADERBOARD_RETENTION_DAYS_DEFAULT, " of days"),
            book_bytes_max=int(os.environ.get("COMPSTREAM_BOOK_BYTES_MAX", str(BOOK_BYTES_MAX))),
            engine=engine,
            task_idle_s=float(os.environ.get("COMPSTREAM_TASK_IDLE_S", "5")),
            idle_advance_s=float(os.environ.get("COMPSTREAM_IDLE_ADVANCE_S", "900")),
            batch_events_max=int(os.environ.get("COMPSTREAM_BATCH_EVENTS_MAX", str(batch_default))),
            history_sink=_choice("COMPSTREAM_HISTORY_SINK", "embedded", ("embedded", "external")),
            usage_ahead_s_max=int(os.environ.get("COMPSTREAM_USAGE_AHEAD_S_MAX", str(USAGE_AHEAD_S_MAX))),
            book_cache_books_max=_whole("COMPSTREAM_BOOK_CACHE_BOOKS_MAX", BOOK_CACHE_BOOKS_MAX),
            book_cache_bytes_max=_whole("COMPSTREAM_BOOK_CACHE_BYTES_MAX", BOOK_CACHE_BYTES_MAX),
        )
