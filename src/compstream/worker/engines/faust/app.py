"""The Faust application: topics, the books table, the ledger agent, web views.

`create_app` is the single wiring point of the worker: settings in, a Faust app
out, with the history store, codec and ledger core plugged together here.

Per batch (bounded by `noack_take`), in this order:
  1. decode + apply to books in memory (processor.py, pure);
  2. write history rows (sink.py, on a thread, retrying until it succeeds)
     while the leaderboard feed runs; both finish before step 3;
  3. write books to the table (changelog), publish balances, alerts, dead
     letters (publisher.py) and wait until the broker has them all;
  4. only then ack the batch's messages, so Faust may commit their offsets.
A crash anywhere before 4 replays the batch; books drop duplicate event ids and
the sink drops rows already written, so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import datetime, timezone

import faust
from faust.types import TP
from faust.web import Request, Response, View

from compstream.config import Settings
from compstream.worker.processor import LedgerProcessor, SourceMessage, partition_of
from compstream.worker.faults import Faults, skip_consumer
from compstream.domain.book_codec import from_us, to_us
from compstream.worker.positions import PositionGuard, is_position_key, position_key, stream_time_key
from compstream.worker.engines.faust.compat import (
    Activity,
    check_private_api,
    commit_now,
    committed_offsets,
    exit_on_crash,
    keep_commits_moving,
    seek,
    stored_position,
    watch_stalls,
)
from compstream.worker.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from compstream.worker.metrics import WorkerMetrics
from compstream.worker.balance_view import balance_body
from compstream.worker.engines.faust.publisher import Publisher
from compstream.worker.sink import HistorySink
from compstream.worker.engines.faust.tail_probe import TailProbe, tail_has_data

log = logging.getLogger(__name__)

BATCH_EVENTS_MAX = 5_000  # per-batch sends (book, balance, leaderboard record per engineer) amortize over more events
BATCH_WITHIN_S = 0.25  # 0.1 cut latency below saturation but shrank backlog batches (bench/profile_notes.md)
PRODUCER_BATCH_BYTES_MAX = 512 * 1024
LEDGER_CRASH_EXIT_CODE = 70
FENCED_EXIT_CODE = 75  # EX_TEMPFAIL: a supervisor restarts it as a fresh member


def _message(event) -> SourceMessage:
    m = event.message
    ts = datetime.fromtimestamp((m.timestamp or 0), tz=timezone.utc)
    return SourceMessage(m.topic, m.partition, m.offset, m.key, m.value, ts)


def create_app(settings: Settings, store=None, **faust_options) -> faust.App:
    from compstream.history import open_history

    store = store if store is not None else open_history(settings.clickhouse_dsn)
    store.migrate()
    keep_commits_moving()
    topics = settings.topics
    app = faust.App(
        settings.worker_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.data_dir / "worker"),
        topic_partitions=settings.source_partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        broker_commit_every=BATCH_EVENTS_MAX,
        broker_commit_interval=1.0,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_in_thread=False,
        producer_acks=-1,
        # Per partition aiokafka fills one batch and waits for it to be sent
        # before starting the next; 16 KiB batches made a 5,000-book batch
        # wait on hundreds of round trips. 512 KiB stays under the broker's
        # default message.max.bytes (1 MiB); memory stays bounded by
        # batch size x partitions written.
        producer_max_batch_size=PRODUCER_BATCH_BYTES_MAX,
        producer_max_request_size=4 * PRODUCER_BATCH_BYTES_MAX,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 10),
        **faust_options,
    )
    check_private_api(app)
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    source = app.topic(topics.usage, topics.grants, **raw)
    balances_topic = app.topic(topics.balances, **raw)
    alerts_topic = app.topic(topics.alerts, **raw)
    dead_topic = app.topic(topics.dead_letters, **raw)
    # value_type=bytes makes Faust use the "raw" codec for the changelog and for
    # recovery (a Schema alone leaves the store decoding values as JSON, which
    # fails on restore and silently loses the books).
    source_names = (topics.usage, topics.grants)
    books = app.Table("books", key_type=str, value_type=bytes, partitions=settings.source_partitions,
                      default=None)
    faults = Faults()
    sink = HistorySink(store, faults)
    publisher = Publisher.for_app(app)
    processor = LedgerProcessor(settings.lateness_s, load_book=lambda e: books.get(e),
                                partitions=settings.source_partitions, book_bytes_max=settings.book_bytes_max)
    guard = PositionGuard(lambda topic, p: stored_position(books, position_key(topic, p)))
    tails = TailProbe(lambda topic, p, start, end: tail_has_data(settings.kafka_bootstrap, topic, p, start, end))
    seen_rebalance = [app.rebalancing_count]
    stream_time_loaded: set[int] = set()  # partitions whose stored stream time was read
    activity = Activity(time.monotonic)

    def expected_of(topic: str, p: int) -> int:
        return guard.expected(topic, p, current=seen_rebalance[0] == app.rebalancing_count)

    watch_stalls(app, "ledger", activity, expected_of, set(source_names), lose_seek=faults.lose_stall_seek)
    metrics = WorkerMetrics("faust")
    app.compstream = {"store": store, "sink": sink, "processor": processor, "books": books, "metrics": metrics}
    feed = None
    if settings.leaderboards_enabled:
        from compstream.worker.engines.faust import leaderboards

        feed = leaderboards.install(app, settings, store, publisher)

    @app.agent(source, name="ledger")
    @exit_on_crash("ledger", LEDGER_CRASH_EXIT_CODE)
    async def ledger(stream):
        async for events in stream.noack_take(BATCH_EVENTS_MAX, within=BATCH_WITHIN_S):
            t0 = time.monotonic()
            with activity:
                await _ledger_batch(stream, events)
            metrics.batch_events.observe(len(events))
            metrics.batch_seconds.observe(time.monotonic() - t0)

    def stored_stream_time(partition: int) -> datetime | None:
        stored = books.get(stream_time_key(partition))
        return from_us(int(stored)) if stored is not None else None

    async def _ledger_batch(stream, events) -> None:
        """One batch, acked only at the end (see the module docstring)."""
        if faults.drop_batch(len(events)):
            for event in events:
                await stream.ack(event)
            return
        if faults.skip_ahead:  # fault injection (faults.py), in a usage partition: records follow
            usage = next((e.message.tp for e in events if e.message.topic == topics.usage), None)
            if usage is not None:
                skipped = await skip_consumer(app, usage, faults.take_skip_ahead())
                log.error("fault injection: the consumer skipped %d records of %s", skipped, usage)
        if seen_rebalance[0] != app.rebalancing_count:
            seen_rebalance[0] = app.rebalancing_count
            guard.forget()
            tails.forget()
            stream_time_loaded.clear()
            if feed is not None:
                feed.forget()
        # Backlogs as they were before this batch: its own messages may still
        # be behind the other topic's, so they must not count as caught up.
        lagging = _lagging(app, source_names, expected_of, tails)
        messages, seeks = guard.screen([_message(e) for e in events])
        for (topic, partition), offset in seeks.items():
            await seek(app, TP(topic, partition), offset)
        if not messages:  # all stale or waiting for a re-read
            for event in events:
                await stream.ack(event)
            return
        for p in {m.partition for m in messages} - stream_time_loaded:
            stored = stored_stream_time(p)
            if stored is not None:
                processor.restore_stream_time(p, stored)
            stream_time_loaded.add(p)
        result = processor.process(messages, keys=lambda: [k for k in books.keys() if not is_position_key(k)],
                                   sweep=True, lagging=lagging,
                                   lagging_after=_lagging(app, source_names, expected_of, tails))  # screen moved `next`
        first, last = messages[0], messages[-1]
        token = (f"{first.topic}:{first.partition}:{first.offset}|"
                 f"{last.topic}:{last.partition}:{last.offset}|{len(messages)}")
        # The store client is blocking: it writes on a thread (keeping the
        # event loop, heartbeats and web alive, also while it waits out an
        # outage) while the leaderboard feed runs here.
        written = asyncio.get_running_loop().run_in_executor(
            None, sink.write_with_retry, result.history, token, lambda: stream.should_stop
        )
        first = _first_offsets(messages)
        behind = _below_commits(app, first)  # before the fence commit lowers them
        if not await _still_owner(app, first):
            # A zombie (paused past the session timeout, its partitions
            # reassigned) must not write tables or publish: the new owner
            # replays this batch. Exit rather than drop it: Faust would
            # wait forever for its acks, and acking could commit it.
            log.error("lost partition ownership during a batch; exiting (code %d) without "
                      "writing its tables or outputs", FENCED_EXIT_CODE)
            logging.shutdown()
            os._exit(FENCED_EXIT_CODE)
        if feed is not None:  # delivered before the positions below are written
            counted = [m for m in messages if (m.topic, m.partition, m.offset) not in result.not_applied]
            await feed.apply(counted, result.decoded)
        await written  # history before any book or position
        for m in messages:
            coords = (m.topic, m.partition, m.offset)
            event = result.decoded.get(coords)
            if event is not None and coords not in result.not_applied:
                metrics.events.labels("applied", event.type).inc()
        for outcome, n in (("duplicate", result.duplicates), ("dead_letter", len(result.dead_letters))):
            if n:
                metrics.events.labels(outcome, "any").inc(n)
        for p in {m.partition for m in messages}:
            stream_t = processor.stream_time.get(p)
            metrics.partition_times(p, stream_t, processor.watermark(p) if stream_t is not None else None)
        log.info("batch of %d: %d applied, %d duplicates, %d dead letters, %d books swept; offsets %s",
                 len(messages), result.applied, result.duplicates, len(result.dead_letters), result.swept,
                 _ranges(messages))
        # Changelog partition = the engineer's source partition. Positions
        # after the books, in the same partition: restored together, a
        # position never runs ahead of its books.
        await publisher.write_table(books, [(e, data, p) for e, (data, p) in result.books.items()])
        await publisher.write_table(books, [
            (position_key(topic, p), str(guard.next[(topic, p)]).encode(), p)
            for topic, p in sorted({(m.topic, m.partition) for m in messages})] + [
            (stream_time_key(p), str(to_us(processor.stream_time[p])).encode(), p)
            for p in sorted({m.partition for m in messages}) if p in processor.stream_time])
        await publisher.send(balances_topic, [(e.encode(), v) for e, v in result.balances])
        await publisher.send(alerts_topic, [(e.encode(), v) for e, v in result.alerts])
        await publisher.send(dead_topic, result.dead_letters)
        await publisher.delivered()
        for event in events:
            await stream.ack(event)
        behind &= app.consumer.assignment()  # committing a revoked partition would crash the consumer
        if behind:
            # Faust had committed past these (records it saw skipped, re-read
            # since) and will not commit them again; the fence put the commit
            # back at the batch's start. Move it to what is now processed.
            await commit_now(app, {tp: guard.next[(tp.topic, tp.partition)] for tp in behind})

    class BalanceView(View):
        async def get(self, request: Request, engineer_id: str) -> Response:
            from compstream.domain.book import EngineerBook

            data = None if is_position_key(engineer_id) else books.get(engineer_id)
            if data is None:
                return self.json({"error": f"no balance for {engineer_id!r}"}, status=404)
            book = EngineerBook.from_bytes(data)
            # As published: as of the partition's stream time (see encode_balance).
            # Before this process's first batch of the partition: the stored one.
            partition = partition_of(engineer_id, settings.source_partitions)
            until = processor.stream_time.get(partition) or stored_stream_time(partition)
            final = processor.watermark(partition) if partition in processor.stream_time else book.watermark
            return self.json(balance_body(book, until, final))

    app.page("/balances/{engineer_id}")(BalanceView)

    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.render(), content_type=METRICS_CONTENT_TYPE.split(";")[0])

    app.page("/metrics")(MetricsView)

    return app


def _first_offsets(messages) -> dict[TP, int]:
    """The offset of each partition's first message in the batch."""
    first: dict[TP, int] = {}
    for m in messages:
        first.setdefault(TP(m.topic, m.partition), m.offset)
    return first


def _below_commits(app: faust.App, first: dict[TP, int]) -> set[TP]:
    """Partitions of the batch whose first message is below the offset Faust
    last committed for them (Faust commits offsets it saw skipped)."""
    committed = committed_offsets(app)
    return {tp for tp, offset in first.items() if (committed.get(tp) or -1) > offset}


async def _still_owner(app: faust.App, first: dict[TP, int]) -> bool:
    """Fence zombies without transactions: commit, for each partition of the
    batch, the offset of its first message (everything before it is done, so
    this never moves a commit forward past unwritten work). The group
    coordinator rejects the commit if a rebalance gave the partition away."""
    if any(tp not in app.consumer.assignment() for tp in first):
        return False
    return await commit_now(app, first)


def _ranges(messages) -> str:
    """'usage:0=10-20 …': the offset span per topic-partition, for the log."""
    spans: dict[tuple[str, int], list[int]] = {}
    for m in messages:
        span = spans.setdefault((m.topic.rsplit(".", 1)[-1], m.partition), [m.offset, m.offset, 0])
        span[0], span[1], span[2] = min(span[0], m.offset), max(span[1], m.offset), span[2] + 1
    return " ".join(f"{t}:{p}={a}-{b}" + ("" if b - a + 1 == n else f"(n={n})")
                    for (t, p), (a, b, n) in sorted(spans.items()))


def _lagging(app: faust.App, source_names, expected_of, tails: TailProbe) -> set[tuple[str, int]]:
    """Source topic-partitions with records not yet processed by this worker
    (a tail of transaction markers only is not a backlog: tail_probe.py)."""
    consumer = app.consumer
    out = set()
    for tp in consumer.assignment():
        if tp.topic not in source_names:
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not fetched yet: unknown counts as behind
            highwater = None
        if highwater is None or highwater < 0:
            out.add((tp.topic, tp.partition))
            continue
        expected = expected_of(tp.topic, tp.partition)
        if expected is None or (expected < highwater
                                and not tails.empty((tp.topic, tp.partition), expected, highwater)):
            out.add((tp.topic, tp.partition))
    return out
