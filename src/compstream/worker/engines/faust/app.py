"""The Faust engine: the checkpoint core (worker/core/) under Faust agents.

Faust supplies the consumer group, the fetched messages and the producer; the
core does the rest exactly as in the transactional engine: TaskInputs orders
each task's usage and grants by event time, LedgerCore.step makes one
checkpoint of a batch (books, balances, alerts, dead letters, leaderboard
records, history rows, positions). Faust has no transactions, so a
checkpoint is written in waves, each delivered before the next:
  0. the batch's cut (core/cut.py): what it took and the times it started from;
  1. history rows, balances, alerts, dead letters, leaderboard candidates
     and boards;
  2. the changelogs: the batch's refusals record first (core/cut.py), then
     books, stream times, leaderboard stage records;
  3. the positions (also changelog records, after the books they describe);
then its messages are acked (Faust commits their offsets later). A crash
before 3 finishes leaves the positions behind: the batch is read again --
as it was cut, so judged as it was --, the books drop the event ids they
hold (and, where the state wave began, what the first attempt refused is
refused again), the history loader drops rows it stored, outputs are re-sent
with the same values. Faust may commit offsets it never handed to an agent (flow
control), so the changelog's positions, not the
group's commits, say where to read from; the position guard seeks back over
such gaps. A zombie (paused past the session timeout) is fenced by a commit
check before it writes (`_still_owner`). After every rebalance the state is
restored from the changelogs. Private-API glue: compat.py only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from datetime import datetime, timezone
from typing import Any, Sequence

import faust
from faust.types import TP

from compstream.config import Settings
from compstream.worker import recorded_late
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.core.idle import IdleRule
from compstream.worker.core.ports import Checkpoint
from compstream.worker.core.sync import TaskInputs
from compstream.worker.engines.core_config import core_config
from compstream.worker.engines.faust.compat import (
    Activity,
    check_private_api,
    commit_now,
    committed_offsets,
    exit_on_crash,
    highwater_or_none,
    keep_commits_moving,
    seek,
    watch_stalls,
)
from compstream.worker.engines.faust.publisher import Publisher
from compstream.worker.engines.faust.tail_probe import TailProbe, tail_has_data
from compstream.worker.engines.history_side import EmbeddedHistory
from compstream.worker.engines.kafka_sides import read_changelog
from compstream.worker.engines.serving import serve
from compstream.worker.faults import Faults, skip_consumer
from compstream.worker.messages import EndOfInput, SourceMessage, new_source_message
from compstream.worker.metrics import WorkerMetrics
from compstream.worker.positions import PositionGuard

log = logging.getLogger(__name__)

BATCH_WITHIN_S = 0.25  # 0.1 cut latency below saturation but shrank backlog batches (bench/profile_notes.md)
TICK_S = 0.25  # buffered messages (usage waiting for its grants' end) and idle tasks move without new arrivals
MERGE_BATCH_MAX = 500
OBSERVE_EVERY_S = 5.0  # lag gauges (the loader's asks the broker)
PRODUCER_BATCH_BYTES_MAX = 512 * 1024
LEDGER_CRASH_EXIT_CODE = 70
FENCED_EXIT_CODE = 75  # EX_TEMPFAIL: a supervisor restarts it as a fresh member


def _message(event: Any) -> SourceMessage:
    m = event.message
    ts = datetime.fromtimestamp((m.timestamp or 0), tz=timezone.utc)
    return new_source_message(m.topic, m.partition, m.offset, m.key, m.value, ts)


def create_app(settings: Settings, **faust_options: Any) -> tuple[faust.App, "FaustEngine"]:
    """The single wiring point of the Faust engine: the app to run, and the
    engine to close when it stops."""
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
        broker_commit_every=settings.batch_events_max,
        broker_commit_interval=1.0,
        web_enabled=False,  # engines/serving.py serves the views of both engines
        # Messages fetched before a rebalance or held in a task buffer are
        # dropped unacked (the changelog's positions say where to read from);
        # Faust's default would wait for their acks at shutdown forever.
        stream_wait_empty=False,
        producer_acks=-1,
        # Per partition aiokafka fills one batch and waits for it to be sent
        # before starting the next; 16 KiB batches made a 5,000-book batch
        # wait on hundreds of round trips. 512 KiB stays under the broker's
        # default message.max.bytes (1 MiB).
        producer_max_batch_size=PRODUCER_BATCH_BYTES_MAX,
        producer_max_request_size=4 * PRODUCER_BATCH_BYTES_MAX,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 10),
        **faust_options,
    )
    check_private_api(app)
    raw: dict[str, Any] = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    config = core_config(settings)
    engine = FaustEngine(app, settings, config)
    source = app.topic(topics.usage, topics.grants, **raw)

    @app.agent(source, name="ledger")
    @exit_on_crash("ledger", LEDGER_CRASH_EXIT_CODE)
    async def ledger(stream: Any) -> None:
        async for events in stream.noack_take(settings.batch_events_max, within=BATCH_WITHIN_S):
            await engine.on_events(stream, events)

    if config.leaderboards is not None:
        candidates = app.topic(topics.leaderboard_candidates, **raw)

        # Its own agent: the candidates topic has one partition, the sources
        # N, and Faust assigns an agent's topics as one co-partitioned group.
        @app.agent(candidates, name="leaderboard-merge")
        @exit_on_crash("leaderboard-merge", LEDGER_CRASH_EXIT_CODE)
        async def merge(stream: Any) -> None:
            async for events in stream.noack_take(MERGE_BATCH_MAX, within=BATCH_WITHIN_S):
                await engine.on_events(stream, events)

    app.timer(TICK_S, name="checkpoint-tick")(engine.tick)
    watch_stalls(app, "ledger", engine.activity, engine.expected, engine.watched,
                 lose_seek=engine.faults.lose_stall_seek)
    return app, engine


class FaustEngine:
    """The engine's state between Faust's callbacks; one asyncio lock keeps
    the agents and the tick from interleaving inside a checkpoint."""

    def __init__(self, app: faust.App, settings: Settings, config: CoreConfig):
        self.app = app
        self.settings = settings
        self.config = config
        topics = config.topics
        self.sources = (topics.usage, topics.grants)
        self.candidates_topic = topics.leaderboard_candidates
        self.watched = set(self.sources) | ({self.candidates_topic} if config.leaderboards else set())
        self.core = LedgerCore(config)
        self.inputs = TaskInputs(topics.usage, topics.grants, idle_s=settings.task_idle_s)
        self.idle = IdleRule(settings.idle_advance_s, time.monotonic, lambda: datetime.now(timezone.utc))
        self.held: dict[tuple[str, int, int], tuple[Any, Any]] = {}  # coords -> (stream, event), unacked
        self.candidates: list[SourceMessage] = []
        self.fetched_next: dict[tuple[str, int], int] = {}
        # No position: nothing of the partition was ever processed, read it from
        # its start (a log start above 0, after retention, is a gap the guard accepts).
        self.guard = PositionGuard(lambda topic, p: self.core.positions.get((topic, p), 0))
        self.tails = TailProbe(lambda topic, p, start, end: tail_has_data(settings.kafka_bootstrap, topic, p,
                                                                            start, end))
        self.paused: set[TP] = set()
        self.generation: int | None = None  # app.rebalancing_count the state was restored at
        self.lock = asyncio.Lock()
        self.activity = Activity(time.monotonic)
        self.faults = Faults()
        self.publisher = Publisher.for_app(app)
        self.metrics = WorkerMetrics("faust")
        self.history = EmbeddedHistory(settings)
        self.web = serve(settings, lambda: self.core, self.metrics)
        self.restore_s_last = 0.0
        self.observed_at = 0.0

    def expected(self, topic: str, partition: int) -> int | None:
        return self.guard.expected(topic, partition, current=self.generation == self.app.rebalancing_count)

    def close(self) -> None:
        self.web.shutdown()
        self.history.stop()

    # -- assignment ---------------------------------------------------------

    async def _sync_assignment(self) -> bool:
        """After any rebalance: a fresh core restored from the changelogs of
        every assigned partition (another worker may have moved any of them on
        meanwhile), nothing buffered, nothing held. False while a rebalance is
        under way: the assignment is not final, nothing may be processed."""
        if self.app.rebalancing:
            return False
        if self.generation == self.app.rebalancing_count:
            return True
        with self.activity:  # no stall seeks while positions are being restored
            await self._restore()
        return True

    async def _restore(self) -> None:
        t0 = time.monotonic()
        self.generation = self.app.rebalancing_count
        assigned = {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}
        self.core = core = LedgerCore(self.config)
        self.inputs.clear()
        self.held.clear()
        self.candidates.clear()
        self.fetched_next.clear()
        self.guard.forget()
        self.tails.forget()
        loop = asyncio.get_running_loop()
        bootstrap = self.settings.kafka_bootstrap

        def read(topic: str, p: int) -> list[tuple[bytes, bytes | None]]:
            return list(read_changelog(bootstrap, topic, p))

        for p in sorted({p for t, p in assigned if t in self.sources}):
            books_topic, *lb_topic = core.changelogs(p)
            books = await loop.run_in_executor(None, read, books_topic, p)
            boards = await loop.run_in_executor(None, read, lb_topic[0], p) if lb_topic else []
            n, records = core.restore(p, books, {}, boards)
            self.metrics.restore_records.inc(records)
            log.info("partition %d restored: %d books from %d changelog records", p, n, records)
        if core.leaderboards is not None and (self.candidates_topic, 0) in assigned:
            core.restore_merge(await loop.run_in_executor(None, read, core.leaderboards.merge_changelog, 0), {})
            log.info("leaderboard merge restored")
        if self.config.recorded is not None:
            log.info("%s", recorded_late.summary(self.config.recorded, self.settings.data_dir))
        self.restore_s_last = time.monotonic() - t0
        self.metrics.restore_seconds.set(self.restore_s_last)

    # -- arrivals -----------------------------------------------------------

    async def on_events(self, stream: Any, events: Sequence[Any]) -> None:
        async with self.lock:
            with self.activity:  # arrivals: not stalled
                await self._arrivals(stream, events)
                await self._checkpoint()

    async def tick(self) -> None:
        if self.lock.locked() or self.generation is None:
            return
        async with self.lock:
            # Not activity unless it checkpoints: the stall watch judges a
            # partition stalled only while nothing arrives or is processed.
            if not await self._sync_assignment():
                return
            self._signal_ends()
            await self._checkpoint(activity=True)
        if time.monotonic() - self.observed_at >= OBSERVE_EVERY_S:
            self.observed_at = time.monotonic()
            await self._observe_positions()

    async def _observe_positions(self) -> None:
        """Lag per source partition and the history loader's, for /metrics."""
        metrics = self.metrics
        for p in sorted(self.core.owned):
            for topic in self.sources:
                hw = highwater_or_none(self.app, TP(topic, p))
                if hw is not None and hw >= 0:
                    metrics.lag.labels(topic, str(p)).set(max(0, hw - self.core.positions.get((topic, p), 0)))
        loader = self.history.loader
        if loader is not None:
            lag = await asyncio.get_running_loop().run_in_executor(None, loader.lag)
            metrics.history_progress(lag, loader.loaded_records)

    async def _arrivals(self, stream: Any, events: Sequence[Any]) -> None:
        faults = self.faults
        if faults.drop_batch(len(events)):
            for event in events:
                await stream.ack(event)
            return
        if faults.skip_ahead:  # fault injection (faults.py), in a usage partition: records follow
            usage = next((e.message.tp for e in events if e.message.topic == self.sources[0]), None)
            if usage is not None:
                skipped = await skip_consumer(self.app, usage, faults.take_skip_ahead())
                log.error("fault injection: the consumer skipped %d records of %s", skipped, usage)
        if not await self._sync_assignment():
            return  # not acked: read again once the assignment is final (positions screen it)
        owned = self.core.owned
        merge_owned = self.core.leaderboards is not None and self.core.leaderboards.merge.loaded()
        mine, by_coords = [], {}
        for event in events:
            m = _message(event)
            if m.topic == self.candidates_topic and not merge_owned or (m.topic in self.sources
                                                                         and m.partition not in owned):
                continue  # fetched before the rebalance: the new owner reads it (not acked, not committed)
            mine.append(m)
            by_coords[(m.topic, m.partition, m.offset)] = event
        kept, seeks = self.guard.screen(mine)
        for (topic, partition), offset in seeks.items():
            await seek(self.app, TP(topic, partition), offset)
        for m in kept:
            coords = (m.topic, m.partition, m.offset)
            self.held[coords] = (stream, by_coords.pop(coords))
            self.fetched_next[(m.topic, m.partition)] = m.offset + 1
            if m.topic == self.candidates_topic:
                self.candidates.append(m)
            else:
                self.inputs.add(m)
                self.idle.touch(m.partition)
        for event in by_coords.values():  # stale (in an earlier checkpoint) or before a gap being re-read
            await stream.ack(event)
        self._signal_ends()
        self._flow_control()

    def _signal_ends(self) -> None:
        """End-of-input per source topic-partition, from the consumer's high
        water (Faust has no EOF signal): at it, or only markers left (tail
        probe), the task need not wait for that input."""
        for p in sorted(self.core.owned):
            for topic in self.sources:
                key = (topic, p)
                nxt = self.fetched_next.get(key, self.core.positions.get(key, 0))
                hw = highwater_or_none(self.app, TP(topic, p))
                if hw is not None and hw >= 0 and (nxt >= hw or self.tails.empty(key, nxt, hw)):
                    self.inputs.add(EndOfInput(topic, p, hw))
                else:
                    self.inputs.mark_backlog(topic, p)

    def _flow_control(self) -> None:
        full = {TP(t, p) for t in self.sources for p in self.core.owned
                if self.inputs.over_bound(t, p, self.core.replay)}
        if full - self.paused:
            self.app.consumer.pause_partitions(full - self.paused)
        if self.paused - full:
            self.app.consumer.resume_partitions(self.paused - full)
        self.paused = full

    # -- the checkpoint -----------------------------------------------------

    async def _checkpoint(self, activity: bool = False) -> None:
        core = self.core
        messages = self.inputs.take(self.settings.batch_events_max, time.monotonic(), core.replay)
        candidates, self.candidates = self.candidates[:MERGE_BATCH_MAX], self.candidates[MERGE_BATCH_MAX:]
        idle = self.idle.due(core.owned, self.inputs)
        resend = core.leaderboards is not None and bool(core.leaderboards.resend)
        if not messages and not candidates and not idle and not resend:
            return
        with self.activity if activity else contextlib.nullcontext():
            await self._write_checkpoint(messages, candidates, idle)

    async def _write_checkpoint(self, messages: list[SourceMessage], candidates: list[SourceMessage],
                                idle: dict[int, datetime]) -> None:
        core = self.core
        t0 = time.monotonic()
        consumed = [*messages, *candidates]
        first = _first_offsets(consumed)
        behind = _below_commits(self.app, first)  # before the fence commit lowers them
        if first and not await _still_owner(self.app, first):
            # A zombie must not write: the new owner replays this batch. Exit
            # rather than drop it: Faust would wait forever for its acks.
            log.error("lost partition ownership during a batch; exiting (code %d) without writing it",
                      FENCED_EXIT_CODE)
            logging.shutdown()
            os._exit(FENCED_EXIT_CODE)
        checkpoint = core.step(messages, lagging=self.inputs.lagging(), candidates=candidates, idle=idle)
        await self._write(checkpoint)
        core.committed()  # every wave delivered: the web view may show it
        for m in consumed:
            stream, event = self.held.pop((m.topic, m.partition, m.offset))
            await stream.ack(event)
        behind &= self.app.consumer.assignment()  # committing a revoked partition would crash the consumer
        if behind:
            # Faust had committed past these (records it saw skipped, re-read
            # since) and will not commit them again; the fence put the commit
            # back at the batch's start. Move it to what is now processed.
            await commit_now(self.app, {tp: core.positions[(tp.topic, tp.partition)] for tp in behind})
        self._observe(checkpoint, time.monotonic() - t0)
        self._flow_control()

    async def _write(self, checkpoint: Checkpoint) -> None:
        cuts, outputs, state, positions = self.core.waves(checkpoint)
        for wave in (cuts, outputs, state, positions):
            await self.publisher.send_records(wave)
            await self.publisher.delivered()
            if wave is outputs:
                self.faults.before_commit()  # crash-after-history: outputs out, state and positions not

    def _observe(self, checkpoint: Checkpoint, seconds: float) -> None:
        st, metrics = checkpoint.stats, self.metrics
        metrics.checkpoint(st, seconds, self.inputs.buffered())
        processor = self.core.processor
        metrics.book_cache_state(processor.book_cache)
        for p in sorted(self.core.owned):
            stream_t = processor.stream_time.get(p)
            metrics.partition_times(p, stream_t, processor.watermark(p) if stream_t is not None else None)
        log.info("batch of %d: %d applied, %d duplicates, %d dead letters, %d books swept, %d stale; offsets %s",
                 st.messages, st.applied, st.duplicates, st.dead_letters, st.swept, st.stale,
                 " ".join(f"{t.rsplit('.', 1)[-1]}:{p}={o}" for (t, p), o in sorted(checkpoint.offsets.items())))


def _first_offsets(messages: Sequence[SourceMessage]) -> dict[TP, int]:
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
