"""`compstream sink`: load the history topic into the history store, exactly once.

Workers of the transactional engine publish history rows inside their batch
transactions; this reads them read_committed (aborted batches never appear)
and writes them through HistorySink, whose high-water filter (source Kafka
coordinates for events and dead letters, per-engineer seq for postings) drops
rows already stored, so a crash between the store write and the offset commit
re-reads rows that are then skipped. The offsets are committed to Kafka under
the loader's own group after each write.

A store outage delays history only: the loader retries with backoff while
the workers keep publishing balances.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from compstream.history.rows import BATCH_ROWS_MAX, TABLE_ROW_TYPES, HistoryBatch, HistoryError
from compstream.history.store import HistoryStore
from compstream.history.wire import decode_batch
from compstream.worker.faults import Faults
from compstream.worker.sink import HistorySink

log = logging.getLogger(__name__)

# A record holds up to RECORD_BYTES_MAX (512 KiB) of rows: a loader that is
# behind takes at most ~50 MiB of JSON per round (and its decoded rows).
POLL_RECORDS_MAX = 100
POLL_TIMEOUT_S = 0.5


class HistoryLoader:
    """`shared=False` (a worker's embedded loader): assigned, not subscribed;
    the loader owns its store, so it takes every partition at once, and a
    restart after kill -9 does not wait out the dead member's session in a
    group rebalance. Offsets are still kept under `group` (commit without
    membership). Two such loaders on one store would both load every row.

    `shared=True` (`compstream sink`): a member of `group`, so N sinks on one
    store (a ClickHouse server) split the history partitions. A partition's
    rows (its source partition's events, dead letters, watermarks, its
    engineers' postings) only ever come through that partition, and the
    eager rebalance protocol revokes a partition from a sink only inside its
    poll, after it committed what it wrote; the new owner starts from those
    offsets with its high-water caches dropped (read again from the store)."""

    def __init__(self, bootstrap: str, topic: str, group: str, store: HistoryStore,
                 faults: Faults | None = None, *, shared: bool = False,
                 session_timeout_s: float = 30.0):
        self.topic = topic
        self.sink = HistorySink(store, faults)
        config = {
            "bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100, "fetch.queue.backoff.ms": 10,
        }
        if shared:
            # Eager (not cooperative) assignors: every member stops before any takes over.
            config.update({"partition.assignment.strategy": "range",
                           "session.timeout.ms": int(session_timeout_s * 1000)})
        self.consumer = Consumer(config)
        if shared:
            self._check_topic(topic)
            self.consumer.subscribe([topic], on_assign=self._on_assign)
        else:
            self.consumer.assign(self._start_positions(topic))
        self.stop_event = threading.Event()
        self.partitions_assigned: tuple[int, ...] = ()  # shared: this member's, after each rebalance
        self.loaded_records = 0
        self.poison_records = 0
        # Read but not yet stored and committed (a store outage holds them):
        # lag counts them, the consumer's position alone would not.
        self.in_flight = 0

    def run_once(self) -> int:
        msgs = self.consumer.consume(POLL_RECORDS_MAX, POLL_TIMEOUT_S)
        data = [m for m in msgs if m.error() is None]
        for m in msgs:
            if m.error() is not None and m.error().code() != KafkaError._PARTITION_EOF:
                log.warning("history loader: %s", m.error())
        if not data:
            return 0
        self.in_flight = len(data)
        batches = []
        for m in data:
            try:
                batches.append(decode_batch(m.value()))
            except HistoryError as exc:  # named, counted, skipped: never half loaded
                self.poison_records += 1
                log.error("history record %s:%d:%d is not loadable: %s", m.topic(), m.partition(), m.offset(), exc)
        batches = merge(batches)
        first, last = data[0], data[-1]
        token = f"h:{first.topic()}:{first.partition()}:{first.offset()}|{last.partition()}:{last.offset()}|{len(data)}"
        self.sink.write_with_retry(batches, token, self.stop_event.is_set)
        next_offsets: dict[tuple[str, int], int] = {}
        for m in data:
            next_offsets[(m.topic(), m.partition())] = m.offset() + 1
        self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()],
                             asynchronous=False)
        self.in_flight = 0
        self.loaded_records += len(data)
        log.info("history loaded: %d records (%d in total)", len(data), self.loaded_records)
        return len(data)

    def _check_topic(self, topic: str) -> list[int]:
        meta = self.consumer.list_topics(topic, timeout=30).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RuntimeError(f"history topic {topic!r} not found: {meta.error if meta else 'no metadata'}")
        return sorted(meta.partitions)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Another sink may have written these partitions' rows meanwhile.
        self.sink.forget_known()
        self.partitions_assigned = tuple(tp.partition for tp in partitions)
        log.info("history partitions assigned: %s", ",".join(str(tp.partition) for tp in partitions) or "none")

    def _start_positions(self, topic: str) -> list[TopicPartition]:
        from compstream.worker.engines.kafka_sides import committed_offsets

        parts = self._check_topic(topic)
        committed = committed_offsets(self.consumer, [(topic, p) for p in parts])
        # -2: OFFSET_BEGINNING where nothing is committed yet
        return [TopicPartition(topic, p, committed.get((topic, p), -2)) for p in parts]

    def lag(self) -> int:
        """Records in the history topic not yet loaded (for the assigned partitions)."""
        total = self.in_flight
        for tp in self.consumer.assignment():
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, timeout=5)
                position = self.consumer.position([tp])[0].offset
            except Exception:
                return 1  # unknown: not caught up
            if position < 0:
                position = _low
            total += max(0, high - position)
        return total

    def rewind(self) -> None:
        """Back to the committed offsets: what was read and not committed is read again."""
        assigned = self.consumer.assignment()
        if not assigned:
            return
        for tp in self.consumer.committed(assigned, timeout=30):
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else -2))

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.run_once()
            except Exception:  # the store or Kafka failed mid-way: re-read what is not committed
                if self.stop_event.is_set():
                    break
                log.exception("history loader round failed; re-reading from the committed offsets")
                self.stop_event.wait(1.0)
                try:
                    self.rewind()
                except Exception:
                    log.exception("history loader rewind failed; exiting the loader")
                    raise

    def close(self) -> None:
        self.stop_event.set()
        self.consumer.close()


def merge(batches: list[HistoryBatch]) -> list[HistoryBatch]:
    """Consecutive records' rows as few batches as the row bound allows (one
    insert per table each), in record order."""
    out: list[HistoryBatch] = []
    tables: dict[str, list[Any]] = {name: [] for name in TABLE_ROW_TYPES}
    count = 0
    for batch in batches:
        if count and count + batch.row_count() > BATCH_ROWS_MAX:
            out.append(HistoryBatch(**{k: tuple(v) for k, v in tables.items()}))
            tables, count = {name: [] for name in TABLE_ROW_TYPES}, 0
        for name, rows in batch.by_table.items():
            tables[name].extend(rows)
        count += batch.row_count()
    if count:
        out.append(HistoryBatch(**{k: tuple(v) for k, v in tables.items()}))
    return out
