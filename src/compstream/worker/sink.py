"""History sink: write a batch's rows to the history store exactly once,
before the batch's offsets may be committed.

Exactly once rests on checks keyed by data that is the same on every retry no
matter how a retried batch is cut (the history topic's loader re-reads what it
wrote but did not commit, cut differently):
- events and dead letters carry their Kafka coordinates; rows at or below the
  partition's stored high-water offset are already written and are dropped;
- postings carry a per-engineer sequence number; rows at or below the stored
  maximum seq are dropped;
- watermark rows only move forward per source partition: rows at or below the
  stored latest final_through are dropped (a new owner of a partition re-records
  the watermark it restored: the first row stays);
- closed leaderboard windows: rows whose key (window, dimension, rank,
  revision) is already stored are dropped (windows close rarely: one lookup
  per window in the batch).
The store's own per-insert deduplication token is a further line for the
byte-identical retry. A failing store raises; the agent retries with backoff
and never acks (so never commits) the batch meanwhile.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import Callable, Sequence

from compstream.history.rows import HistoryBatch, LeaderboardWindowRow, WatermarkRow
from compstream.history.store import HistoryStore
from compstream.worker.faults import Faults

log = logging.getLogger(__name__)

RETRY_DELAY_S_MAX = 10.0


class HistorySink:
    def __init__(self, store: HistoryStore, faults: Faults | None = None) -> None:
        self.store = store
        self.faults = faults
        # Cached high-water marks; refreshed after any failed write, since a
        # failure may have left a partial write behind.
        self._offset_max: dict[tuple[str, str, int], int] = {}
        self._seq_max: dict[str, int] = {}
        self._final_max: dict[int, datetime | None] = {}
        self.failures = 0
        self.rows_written = 0

    def forget_known(self) -> None:
        """Drop the cached high-water marks (after a failed write, which may
        have left a partial write behind, or when another writer may have
        written meanwhile): the next write reads them from the store."""
        self._offset_max.clear()
        self._seq_max.clear()
        self._final_max.clear()

    def _known_offset(self, table: str, topic: str, partition: int) -> int:
        key = (table, topic, partition)
        if key not in self._offset_max:
            self._offset_max[key] = self.store.offset_max(table, topic, partition)
        return self._offset_max[key]

    def _known_seqs(self, engineers: set[str]) -> None:
        missing = [e for e in engineers if e not in self._seq_max]
        if missing:
            found = self.store.posting_seq_max(missing)
            for engineer in missing:
                self._seq_max[engineer] = found.get(engineer, 0)

    def filter_written(self, batch: HistoryBatch) -> HistoryBatch:
        events = tuple(
            r for r in batch.events
            if r.kafka_offset > self._known_offset("events", r.kafka_topic, r.kafka_partition)
        )
        dead = tuple(
            r for r in batch.dead_letters
            if r.kafka_offset > self._known_offset("dead_letters", r.kafka_topic, r.kafka_partition)
        )
        self._known_seqs({p.engineer_id for p in batch.postings})
        postings = tuple(p for p in batch.postings if p.seq > self._seq_max[p.engineer_id])
        return replace(batch, events=events, postings=postings, dead_letters=dead,
                       watermarks=self._new_watermarks(batch.watermarks),
                       leaderboard_windows=self._new_windows(batch.leaderboard_windows))

    def _new_watermarks(self, rows: Sequence[WatermarkRow]) -> tuple[WatermarkRow, ...]:
        latest: dict[int, datetime | None] = {}
        out = []
        for row in rows:
            if row.partition not in latest:
                if row.partition not in self._final_max:
                    stored = self.store.final_through(row.partition)
                    self._final_max[row.partition] = stored.final_through if stored is not None else None
                latest[row.partition] = self._final_max[row.partition]
            known = latest[row.partition]
            if known is None or row.final_through > known:
                out.append(row)
                latest[row.partition] = row.final_through
        return tuple(out)

    def _new_windows(self, rows: Sequence[LeaderboardWindowRow]) -> tuple[LeaderboardWindowRow, ...]:
        if not rows:
            return ()
        seen: set[tuple[object, ...]] = set()
        for kind, start in {(r.window_kind, r.window_start) for r in rows}:
            seen.update(r.key() for r in self.store.leaderboard_windows(kind, start))
        out = []
        for row in rows:
            if row.key() not in seen:
                out.append(row)
                seen.add(row.key())
        return tuple(out)

    def write(self, batch: HistoryBatch, token: str) -> int:
        """Write what is not yet written. Raises on store failure."""
        try:
            if self.faults is not None:
                self.faults.before_history_write()
            todo = self.filter_written(batch)
            if todo.row_count():
                self.store.append_batch(todo, token)
        except Exception:
            self.failures += 1
            self.forget_known()
            raise
        for r in todo.events:
            key = ("events", r.kafka_topic, r.kafka_partition)
            self._offset_max[key] = max(self._offset_max.get(key, -1), r.kafka_offset)
        for d in todo.dead_letters:
            key = ("dead_letters", d.kafka_topic, d.kafka_partition)
            self._offset_max[key] = max(self._offset_max.get(key, -1), d.kafka_offset)
        for p in todo.postings:
            self._seq_max[p.engineer_id] = max(self._seq_max.get(p.engineer_id, 0), p.seq)
        for w in todo.watermarks:  # filtered above: each is past the partition's known one
            self._final_max[w.partition] = w.final_through
        self.rows_written += todo.row_count()
        if self.faults is not None:
            self.faults.after_history_write()
        return todo.row_count()

    def write_all(self, batches: Sequence[HistoryBatch], token: str) -> int:
        """Write the pieces of one source batch in order (see
        rows.history_batches); a retry after a partial write re-filters every
        piece, so each row is still written once."""
        if len(batches) == 1:
            return self.write(batches[0], token)
        return sum(self.write(b, f"{token}#{i}") for i, b in enumerate(batches))

    def write_with_retry(self, batches: Sequence[HistoryBatch], token: str,
                         should_stop: Callable[[], bool] = lambda: False) -> int:
        """Blocking retry loop with capped exponential backoff (runs in a thread)."""
        delay_s = 0.2
        while True:
            try:
                return self.write_all(batches, token)
            except Exception as exc:  # any store failure: pause, never skip
                if should_stop():
                    raise
                log.warning("history write failed (%r); retrying in %.1fs", exc, delay_s)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, RETRY_DELAY_S_MAX)
