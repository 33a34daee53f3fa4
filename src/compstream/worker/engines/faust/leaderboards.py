"""Leaderboards wired into the worker: one feed, one agent, two tables, one web view.

    source (usage + grants, N partitions)
      -> ledger agent (app.py), after its position guard screened the batch
      -> PartitionFeed: PartitionStage per source partition
      -> topic `leaderboard-candidates` (1 partition)
      -> agent `leaderboard-merge` (MergeStage; only on the worker that owns
         the candidates partition; its own position guard)
      -> topic `leaderboards` (compacted, key `<window>|<scope>|<metric>`)
         + closed windows in history (`leaderboard_windows`)

Ack-after-durable throughout: the feed's candidates and records are flushed
before the ledger writes its positions and acks; the merge acks after boards,
history and records are written. A crash replays the batch: the partition
stage skips offsets its records already hold (leaderboard_partition.py), the
merge replaces rather than adds (messages carry versions), history writes use
one dedup token per window, and boards are compacted by key.

State lives in two Faust tables (changelogs), loaded lazily: a partition's
records on its first batch after start or after any rebalance (the records may
have moved on under another worker meanwhile). See the stage modules for the
record layouts; the view is documented in leaderboard_view.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

import faust
from faust.types import TP
from faust.web import Request, Response, View

from compstream.worker.engines.faust.compat import (
    Activity,
    exit_on_crash,
    seek,
    stored_position,
    table_writes_for,
    watch_stalls,
)
from compstream.config import Settings
from compstream.history.rows import HistoryBatch
from compstream.worker.leaderboards.settings import leaderboard_config, pseudonymizer
from compstream.worker.leaderboards.merge import DIMENSIONS, MergeStage
from compstream.worker.leaderboards.partition import PartitionStage, dumps, meta_key
from compstream.worker.leaderboards.view import BadRequest, TopicBoards, resolve_window
from compstream.worker.positions import PositionGuard
from compstream.worker.engines.faust.publisher import Publisher
from compstream.worker.processor import SourceMessage

log = logging.getLogger(__name__)

MERGE_BATCH_MAX = 500
BATCH_WITHIN_S = 0.25
RETRY_DELAY_S_MAX = 10.0
EXIT_AGENT_CRASHED = 71
MERGE_POSITION_KEY = "p|position"  # merge records are w|, c|, m|


def _source_message(event) -> SourceMessage:
    m = event.message
    ts = datetime.fromtimestamp(m.timestamp or 0, tz=timezone.utc)
    return SourceMessage(m.topic, m.partition, m.offset, m.key, m.value, ts)


# Versions order a partition's candidate messages at the merge. Wall-clock time
# alone is not enough: after a rebalance the previous owner can finish its last
# batch after the new owner resent its state, and its later clock would win
# with older content. The consumer-group generation goes first, so any message
# sent under a newer generation beats every message of an older one.
_CLOCK_BITS = 51  # microseconds since 1970 fit until 2041


def version_stamp(generation: int, now_us: int) -> int:
    if generation < 0 or now_us < 0 or now_us >= 1 << _CLOCK_BITS:
        raise ValueError(f"cannot stamp generation {generation} at {now_us} us")
    return (generation << _CLOCK_BITS) | now_us


def write_history(store, token: str, rows, should_stop=lambda: False) -> None:
    """Blocking, retried with capped backoff until it succeeds (never skipped)."""
    delay_s = 0.2
    while True:
        try:
            store.append_batch(HistoryBatch(leaderboard_windows=tuple(rows)), token)
            return
        except Exception as exc:  # any store failure: pause, never skip
            if should_stop():
                raise
            log.warning("leaderboard history write failed (%r); retrying in %.1fs", exc, delay_s)
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, RETRY_DELAY_S_MAX)


def install(app: faust.App, settings: Settings, store, publisher: Publisher):
    """Add the merge agent, the tables and the web view to `app` (once); returns
    the partition feed the ledger agent calls with each screened batch. The
    feed writes through the ledger's `publisher`."""
    if getattr(app, "leaderboards", None) is not None:
        raise RuntimeError("leaderboards already installed on this app")
    config = leaderboard_config(settings)
    topics = settings.topics
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    candidates = app.topic(topics.leaderboard_candidates, **raw)
    boards_topic = app.topic(topics.leaderboards, **raw)
    # Types as Table arguments, not via `schema=`: Faust derives the changelog
    # serializers from key_type/value_type only (bytes -> raw, else JSON); with
    # a schema alone, recovery decodes the values as JSON and fails.
    table_raw = dict(key_type=str, value_type=bytes, default=None)
    partition_table = app.Table("leaderboard-partitions", partitions=settings.source_partitions, **table_raw)
    # One partition, like the candidates topic it is co-partitioned with.
    merge_table = app.Table("leaderboard-merge", partitions=1, **table_raw)
    stage = PartitionStage(config, {topics.usage: "usage", topics.grants: "grants"})
    merge = MergeStage(config, settings.source_partitions, pseudonymizer(settings))
    reader = TopicBoards(settings.kafka_bootstrap, topics.leaderboards)
    seen_rebalance = [-1]
    app.leaderboards = {"stage": stage, "merge": merge, "reader": reader}

    def rebalanced(who: str) -> bool:
        if seen_rebalance[0] != app.rebalancing_count:
            seen_rebalance[0] = app.rebalancing_count
            return True
        return False

    class PartitionFeed:
        """The partition stage, fed by the ledger agent with the batch its
        position guard screened: one pass over the source, so the leaderboards
        see exactly the messages the ledger sees (Faust skips and acks messages
        that arrive while its flow control is paused; the guard re-reads them,
        a second agent on the source would have lost them)."""

        def forget(self) -> None:
            stage.forget()

        async def apply(self, counted: list[SourceMessage], decoded: dict) -> None:
            """`counted`: the batch's messages the ledger applied (not event-id
            duplicates, conflicts or dead letters). Candidates sent, records
            written and both delivered on return: the ledger writes its
            positions only after this, so a stored position never runs ahead
            of the leaderboard records. `decoded`: the ledger's decoded events
            (BatchResult.decoded), so the stage does not decode them again."""
            now_us = version_stamp(app.consumer_generation_id, time.time_ns() // 1000)
            resend = []
            for p in sorted({m.partition for m in counted} - set(stage.states)):
                prefix, meta = f"e|{p}|", meta_key(p)
                items = [(k, v) for k, v in partition_table.items() if k == meta or k.startswith(prefix)]
                resend += stage.restore(p, items, now_us)
                log.info("leaderboard partition %d restored: %d records, %d open and %d closed windows",
                         p, len(items), len(stage.states[p].windows), len(stage.states[p].closed))
            out = stage.process(counted, now_us, decoded)
            await publisher.send(candidates, [(str(msg.partition).encode(), dumps(msg.to_dict()))
                                              for msg in [*resend, *out.messages]])
            # Changelog partition = the source partition the records describe.
            await publisher.write_table(partition_table, [
                (key, value, p) for p, records in out.records.items() for key, value in records.items()])
            await publisher.delivered()

    # The merge has its own position on the candidates topic for the same
    # reason as the ledger's (positions.py): a skipped candidate message would
    # leave a partition's contribution stale until its next message.
    merge_guard = PositionGuard(lambda topic, p: stored_position(merge_table, MERGE_POSITION_KEY))
    merge_activity = Activity(time.monotonic)

    def merge_expected(topic: str, p: int) -> int:
        return merge_guard.expected(topic, p, current=seen_rebalance[0] == app.rebalancing_count)

    watch_stalls(app, "leaderboard-merge", merge_activity, merge_expected, {topics.leaderboard_candidates})

    @app.agent(candidates, name="leaderboard-merge")
    @exit_on_crash("leaderboard-merge", EXIT_AGENT_CRASHED)
    async def leaderboard_merge(stream):
        async for events in stream.noack_take(MERGE_BATCH_MAX, within=BATCH_WITHIN_S):
            with merge_activity:
                await merge_batch(stream, events)

    async def merge_batch(stream, events) -> None:
        loop = asyncio.get_running_loop()
        if rebalanced("merge") or not merge.loaded():
            merge.restore([(k, v) for k, v in merge_table.items() if k != MERGE_POSITION_KEY])
            merge_guard.forget()
        messages, seeks = merge_guard.screen([_source_message(e) for e in events])
        for (topic, p), offset in seeks.items():
            await seek(app, TP(topic, p), offset)
        if messages:
            out = merge.process([m.value for m in messages])
            for token, rows in out.history:
                # Blocking store client: keep the event loop (heartbeats, web) alive.
                await loop.run_in_executor(None, write_history, store, token, rows,
                                           lambda: stream.should_stop)
            for key, value in out.publish:
                await boards_topic.send(key=key, value=value)
            with table_writes_for(stream) as set_event:
                set_event(events[-1])
                for key, value in out.records.items():
                    if value is not None:
                        merge_table[key] = value
                    elif key in merge_table:
                        del merge_table[key]
                # After the records, same changelog partition: restored together.
                last = messages[-1]
                merge_table[MERGE_POSITION_KEY] = str(merge_guard.next[(last.topic, last.partition)]).encode()
            await app.producer.flush()
        for event in events:
            await stream.ack(event)

    def owns_merge() -> bool:
        try:
            assigned = app.consumer.assignment()
        except Exception:  # consumer not started yet
            return False
        return merge.loaded() and TP(topics.leaderboard_candidates, 0) in assigned

    class LeaderboardView(View):
        async def get(self, request: Request, window: str, dimension: str) -> Response:
            if dimension not in DIMENSIONS:
                return self.json({"error": f"unknown dimension {dimension!r}", "dimensions": sorted(DIMENSIONS)},
                                 status=400)
            scope, metric = DIMENSIONS[dimension]
            if owns_merge():
                source, served_by = merge, "merge-state"
            else:
                await asyncio.get_running_loop().run_in_executor(None, reader.refresh)
                source, served_by = reader, "leaderboards-topic"
            try:
                key = resolve_window(window, source.known_windows())
            except BadRequest as exc:
                return self.json({"error": str(exc)}, status=400)
            board = None if key is None else source.lookup(key, scope, metric)
            if board is None:
                return self.json({"error": f"no {dimension} board for {window!r}", "served_by": served_by},
                                 status=404)
            return self.json({**board, "served_by": served_by})

    app.page("/leaderboards/{window}/{dimension}")(LeaderboardView)

    @app.on_before_shutdown.connect
    async def _close_reader(app, **kwargs) -> None:
        reader.close()

    return PartitionFeed()
