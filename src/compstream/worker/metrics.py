"""Prometheus metrics of the long-running processes (worker, sink).

One registry per process; `render()` is what `GET /metrics` serves. Names
follow Prometheus conventions (units last: `_seconds`, `_total`). The runbook
lists the alerts to set on them (docs/runbook.md, "Alerts").
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from compstream.worker.book_cache import BookCache
from compstream.worker.core.ports import BatchStats

CONTENT_TYPE = CONTENT_TYPE_LATEST


class WorkerMetrics:
    def __init__(self, engine: str):
        self.registry = CollectorRegistry()
        r = self.registry
        info = Gauge("compstream_engine_info", "The stream engine of this worker", ["engine"], registry=r)
        info.labels(engine).set(1)
        self.events = Counter("compstream_events_total", "Source events by outcome and event type",
                              ["outcome", "type"], registry=r)
        self.batch_events = Histogram("compstream_batch_events", "Messages per batch",
                                      buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000), registry=r)
        self.batch_seconds = Histogram("compstream_batch_seconds",
                                       "Wall time of one batch, its fill's start to its own commit's end",
                                       buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.transactions = Counter("compstream_transactions_total", "Checkpoints by result (commit, abort)",
                                    ["result"], registry=r)
        self.lag = Gauge("compstream_consumer_lag_records", "Source records not yet applied",
                         ["topic", "partition"], registry=r)
        self.watermark = Gauge("compstream_watermark_seconds",
                               "Watermark per source partition (unix seconds): postings final through it",
                               ["partition"], registry=r)
        self.stream_time = Gauge("compstream_stream_time_seconds", "Latest usage event time per partition",
                                 ["partition"], registry=r)
        self.restore_seconds = Gauge("compstream_restore_seconds", "Time of the last state restore after an assignment",
                                     registry=r)
        self.restore_records = Counter("compstream_restore_changelog_records_total",
                                       "Books changelog records read by restores (about one per book when compacted)",
                                       registry=r)
        self.restore_records_seen = 0
        self.book_bytes = Counter("compstream_changelog_book_bytes_total",
                                  "Bytes of book records (books, heads of busy books, their segments) written to the"
                                  " books changelog", registry=r)
        self.buffered = Gauge("compstream_buffered_messages", "Fetched messages waiting for their task's inputs",
                              registry=r)
        self.history_lag = Gauge("compstream_history_sink_lag_records", "History topic records not yet loaded",
                                 registry=r)
        self.history_loaded = Counter("compstream_history_loaded_records_total", "History topic records loaded",
                                      registry=r)
        self.history_loaded_seen = 0
        # Whether COMPSTREAM_BOOK_CACHE_* fit the books a worker touches:
        # misses are books deserialized by a batch (worker/book_cache.py).
        self.book_cache = Counter("compstream_book_cache_total", "Books a batch took from the live-book cache (hit)"
                                  " or deserialized (miss)", ["result"], registry=r)
        self.book_cache_seen = {"hit": 0, "miss": 0}
        self.book_cache_last: BookCache | None = None
        self.book_cache_books = Gauge("compstream_book_cache_books", "Live books cached between batches", registry=r)
        self.book_cache_bytes = Gauge("compstream_book_cache_bytes", "Serialized bytes of the cached live books"
                                      " (their objects take ~7 times as much memory)", registry=r)

    def checkpoint(self, stats: BatchStats, seconds: float, buffered: int) -> None:
        """One checkpoint made durable (a transaction on that engine)."""
        self.transactions.labels("commit").inc()
        self.batch_events.observe(stats.messages)
        self.batch_seconds.observe(seconds)
        for kind, n in stats.applied_by_type.items():
            self.events.labels("applied", kind).inc(n)
        for outcome, n in (("duplicate", stats.duplicates), ("dead_letter", stats.dead_letters),
                           ("stale", stats.stale)):
            if n:
                self.events.labels(outcome, "any").inc(n)
        self.book_bytes.inc(stats.book_bytes)
        self.buffered.set(buffered)

    def book_cache_state(self, cache: BookCache) -> None:
        """The cache's hits and misses since the last call, and what it holds
        now. Another cache object than last time is a new one (the core is
        rebuilt after an abort): its counts start from zero."""
        seen = self.book_cache_seen if cache is self.book_cache_last else {"hit": 0, "miss": 0}
        for result, total in (("hit", cache.hits), ("miss", cache.misses)):
            self.book_cache.labels(result).inc(total - seen[result])
        self.book_cache_seen = {"hit": cache.hits, "miss": cache.misses}
        self.book_cache_last = cache
        self.book_cache_books.set(len(cache))
        self.book_cache_bytes.set(cache.bytes)

    def history_progress(self, lag: int, loaded_records: int) -> None:
        """The embedded loader's lag and its running count of loaded records."""
        self.history_lag.set(lag)
        self.history_loaded.inc(loaded_records - self.history_loaded_seen)
        self.history_loaded_seen = loaded_records

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def partition_times(self, partition: int, stream_time: datetime | None, watermark: datetime | None) -> None:
        if stream_time is not None:
            self.stream_time.labels(str(partition)).set(stream_time.timestamp())
        if watermark is not None:
            self.watermark.labels(str(partition)).set(watermark.timestamp())
