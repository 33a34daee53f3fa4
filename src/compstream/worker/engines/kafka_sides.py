"""The checkpoint core's input and output sides on confluent-kafka.

Input: one group consumer on both source topics, `range` assignment (usage
partition p and grants partition p always go to the same member: the task),
read_committed, partition EOF signals on (the task synchronization needs to
know when an input is at its end), offsets committed only through the
producer's transaction.
Output: one transactional producer per worker; a checkpoint is one
transaction holding every record and the consumed offsets
(send_offsets_to_transaction with the consumer's group metadata: a member
that lost its partitions in a rebalance cannot commit -- zombies are fenced
by the protocol, KIP-447).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from compstream.worker.core.ports import Assigned, Checkpoint, CommitFailed, Polled, Revoked
from compstream.worker.core.ports import TopicPartition as TP
from compstream.worker.faults import Faults
from compstream.worker.messages import EndOfInput, new_source_message

log = logging.getLogger(__name__)

OFFSET_BEGINNING = -2
TXN_TIMEOUT_S = 30.0
RESTORE_IDLE_S_MAX = 30.0
PRODUCE_QUEUE_WAIT_S = 0.05
RETRY_BACKOFF_MS = 10
# Committed offsets may wait on another member's open transaction: up to
# COMMITTED_ATTEMPTS x COMMITTED_TIMEOUT_S, well past TXN_TIMEOUT_S.
COMMITTED_ATTEMPTS = 6
# A seek right after an assignment fails with _STATE while librdkafka is
# still looking up the partition's start offset (not yet fetching; seen in
# CI for a partition with no committed offset; librdkafka issue #3959). It
# gets there on its own; waited out up to the transaction timeout, which
# bounds how long an open transaction can hold a partition's offsets.
SEEK_RETRY_S = 0.1
SEEK_ATTEMPTS = int(TXN_TIMEOUT_S / SEEK_RETRY_S)
COMMITTED_TIMEOUT_S = 15.0
# A changelog just created by another worker of the group may have no leader
# for a moment (that worker waited for it, this one found it existing).
LEADER_ATTEMPTS = 10
_NO_LEADER_YET = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                            KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT})

# librdkafka's defaults favour few large fetches: fetch.queue.backoff.ms
# (1 s) makes a consumer that keeps up wait a second per refill. These keep
# the prefetch queue full without that wait (bench/ measures them).
CONSUMER_TUNING = {
    "fetch.wait.max.ms": 50,
    "fetch.queue.backoff.ms": 10,
    "queued.min.messages": 200_000,
    "queued.max.messages.kbytes": 128 * 1024,
}


def consumer_config(bootstrap: str, group: str, session_timeout_s: float) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "partition.assignment.strategy": "range",
        "session.timeout.ms": int(session_timeout_s * 1000),
        "heartbeat.interval.ms": max(1000, int(session_timeout_s * 100)),
        "max.poll.interval.ms": 300_000,
        **CONSUMER_TUNING,
    }


def producer_config(bootstrap: str, transactional_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": int(TXN_TIMEOUT_S * 1000),
        "enable.idempotence": True,
        "acks": "all",
        # Keys land where Java, kafka-python and aiokafka put them: balances
        # are keyed by engineer like the source topics.
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        # A transaction begun right after the last one committed meets
        # CONCURRENT_TRANSACTIONS while the broker still writes that one's
        # markers, and librdkafka retries after retry.backoff.ms (100 ms by
        # default): with one commit in flight every checkpoint paid it (p99 at
        # 1k ev/s x1.8, bench/profile_notes.md). Java retries that case after
        # 20 ms (KAFKA-5477); backoff still grows to retry.backoff.max.ms.
        "retry.backoff.ms": RETRY_BACKOFF_MS,
        "batch.size": 512 * 1024,
        "queue.buffering.max.messages": 200_000,
        "queue.buffering.max.kbytes": 512 * 1024,
    }


def _ts_of(ms: int) -> datetime:
    """A record's Kafka timestamp (milliseconds; none: -1) as a UTC time."""
    return datetime.fromtimestamp(max(ms, 0) / 1000, tz=timezone.utc)


def committed_offsets(consumer: Consumer, partitions: Iterable[TP]) -> dict[TP, int]:
    """The group's committed next offset per partition (absent: none), waiting
    out transient coordinator errors (a broker just started answers
    NOT_COORDINATOR for a while)."""
    tps = [TopicPartition(t, p) for t, p in partitions]
    if not tps:
        return {}
    # read_committed asks for stable offsets (KIP-447): while a fenced or
    # paused member's transaction on these partitions is still open, the
    # coordinator answers only once it commits or times out
    # (transaction.timeout.ms). Wait that out instead of dying.
    for attempt in range(1, COMMITTED_ATTEMPTS + 1):
        try:
            found = consumer.committed(tps, timeout=COMMITTED_TIMEOUT_S)
            return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            transient = isinstance(err, KafkaError) and (
                err.retriable() or err.code() in (KafkaError._TIMED_OUT, KafkaError.NOT_COORDINATOR,
                                                  KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                                  KafkaError.COORDINATOR_NOT_AVAILABLE))
            if not transient or attempt == COMMITTED_ATTEMPTS:
                raise
            log.warning("committed offsets not available yet (%s); attempt %d of %d", err, attempt,
                        COMMITTED_ATTEMPTS)
            time.sleep(min(attempt, 5))
    raise RuntimeError("unreachable")


def read_changelog(bootstrap: str, topic: str, partition: int) -> Iterator[tuple[bytes, bytes | None]]:
    """Every committed record of the changelog partition (read_committed,
    from the beginning to its end)."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "compstream-restore",
                       "isolation.level": "read_committed", "enable.auto.commit": False,
                       "enable.partition.eof": True, **CONSUMER_TUNING})
    try:
        low, high = _watermarks(reader, TopicPartition(topic, partition))
        if high <= low:  # nothing was ever committed there
            return
        reader.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        quiet_since = time.monotonic()
        while True:
            batch = reader.consume(10_000, 0.5)
            if not batch and time.monotonic() - quiet_since > RESTORE_IDLE_S_MAX:
                raise RuntimeError(f"restore of {topic}:{partition} got no end signal "
                                   f"within {RESTORE_IDLE_S_MAX} s")
            for m in batch:
                quiet_since = time.monotonic()
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return
                    raise KafkaException(err)
                if m.key() is not None:
                    yield m.key(), m.value()
    finally:
        reader.close()


class KafkaInput:
    def __init__(self, bootstrap: str, group: str, topics: tuple[str, ...], session_timeout_s: float):
        self.bootstrap = bootstrap
        self.consumer = Consumer(consumer_config(bootstrap, group, session_timeout_s))
        self._events: list[Polled] = []
        self.consumer.subscribe(list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        self.consumed: dict[TP, int] = {}  # next offset after what poll returned

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = tuple(sorted((tp.topic, tp.partition) for tp in partitions))
        log.info("assigned %s", parts)
        self._events.append(Assigned(parts))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = tuple(sorted((tp.topic, tp.partition) for tp in partitions))
        log.info("revoked %s", parts)
        for tp in parts:
            self.consumed.pop(tp, None)
        self._events.append(Revoked(parts))

    def poll(self, max_messages: int, timeout_s: float) -> list[Polled]:
        msgs = self.consumer.consume(max_messages, timeout_s)
        out, self._events = self._events, []
        consumed = self.consumed
        ms_last, ts_last = None, _ts_of(0)
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    out.append(EndOfInput(m.topic(), m.partition(), m.offset()))
                    consumed[(m.topic(), m.partition())] = m.offset()
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer: %s", err)
                continue
            topic, p, offset = m.topic(), m.partition(), m.offset()
            ms = m.timestamp()[1]
            if ms != ms_last:  # a producer's batch shares one time: one datetime for the run
                ms_last, ts_last = ms, _ts_of(ms)
            out.append(new_source_message(topic, p, offset, m.key(), m.value(), ts_last))
            consumed[(topic, p)] = offset + 1
        return out

    def backlog(self, partitions: Iterable[TP], below: dict[TP, int] | None = None) -> set[TP]:
        out = set()
        for tp in partitions:
            marks = self._watermarks(tp)
            if marks is None:
                continue
            low, high = marks
            position = self.consumed.get(tp)
            known = high is not None and high >= 0
            # Nothing returned yet and no end signal: unknown, or a non-empty
            # partition, may hold a backlog until its first fetch says otherwise.
            if position is None:
                if not known or high > low:
                    out.add(tp)
            elif known and position < (high if below is None else min(high, below.get(tp, high))):
                out.add(tp)
        return out

    def ends(self, partitions: Iterable[TP]) -> dict[TP, int]:
        out = {}
        for tp in partitions:
            marks = self._watermarks(tp)
            if marks is not None and marks[1] is not None and marks[1] >= 0:
                out[tp] = marks[1]
        return out

    def _watermarks(self, tp: TP) -> tuple[int, int] | None:
        """The partition's low and high watermarks as last fetched (cached: no broker round trip)."""
        try:
            marks = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
        except KafkaException:
            return None
        return None if marks is None else (marks[0], marks[1])

    def lag(self, partitions: Iterable[TP], positions: dict[TP, int]) -> dict[TP, int]:
        """Records past the applied position, per partition (cached high
        watermarks: no broker round trip)."""
        return {tp: max(0, end - positions.get(tp, 0)) for tp, end in self.ends(partitions).items()}

    def committed(self, partitions: Iterable[TP]) -> dict[TP, int]:
        return committed_offsets(self.consumer, partitions)

    def changelog(self, topic: str, partition: int) -> Iterator[tuple[bytes, bytes | None]]:
        """Every committed record of the changelog partition (read_committed,
        from the beginning to its end)."""
        return read_changelog(self.bootstrap, topic, partition)

    def seek(self, offsets: dict[TP, int | None]) -> None:
        for (topic, p), offset in offsets.items():
            target = TopicPartition(topic, p, OFFSET_BEGINNING if offset is None else offset)
            for attempt in range(1, SEEK_ATTEMPTS + 1):
                try:
                    self.consumer.seek(target)
                    break
                except KafkaException as exc:
                    err = exc.args[0] if exc.args else None
                    # Still not fetching after the retries (or any other error):
                    # raised, and the process restarts clean.
                    if not (isinstance(err, KafkaError) and err.code() == KafkaError._STATE) \
                            or attempt == SEEK_ATTEMPTS:
                        raise
                    if attempt == 1:
                        log.info("seek of %s:%d to %s waits for the partition to start fetching (%s)",
                                 topic, p, offset, err)
                    time.sleep(SEEK_RETRY_S)
            self.consumed.pop((topic, p), None)

    def pause(self, partitions: Iterable[TP]) -> None:
        self.consumer.pause([TopicPartition(t, p) for t, p in partitions])

    def resume(self, partitions: Iterable[TP]) -> None:
        self.consumer.resume([TopicPartition(t, p) for t, p in partitions])

    def close(self) -> None:
        self.consumer.close()


def _watermarks(reader: Consumer, tp: TopicPartition) -> tuple[int, int]:
    for attempt in range(1, LEADER_ATTEMPTS + 1):
        try:
            low, high = reader.get_watermark_offsets(tp, timeout=30)
            return int(low), int(high)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not isinstance(err, KafkaError) or err.code() not in _NO_LEADER_YET or attempt == LEADER_ATTEMPTS:
                raise
            log.warning("%s:%d has no leader yet (%s); attempt %d of %d", tp.topic, tp.partition, err.str(),
                        attempt, LEADER_ATTEMPTS)
            time.sleep(0.5 * attempt)
    raise RuntimeError("unreachable")


class KafkaOutput:
    def __init__(self, bootstrap: str, transactional_id: str, consumer: Consumer, faults: Faults | None = None) -> None:
        self.producer = Producer(producer_config(bootstrap, transactional_id))
        self.consumer = consumer
        self.faults = faults
        # Aborts whatever a previous incarnation with this id left open, so
        # read_committed readers are not held at it until its timeout.
        self.producer.init_transactions(60)

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None) -> None:
        while True:
            try:
                if partition is None:
                    self.producer.produce(topic, value=value, key=key)
                else:
                    self.producer.produce(topic, value=value, key=key, partition=partition)
                return
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(PRODUCE_QUEUE_WAIT_S)

    def commit(self, checkpoint: Checkpoint, group: Any = None) -> None:
        """`group`: the consumer's group metadata as read when the batch was
        handed over (TransactionCommitter); None: read it now."""
        if group is None:
            group = self.consumer.consumer_group_metadata()
        try:
            self.producer.begin_transaction()
            produce = self.producer.produce
            for r in checkpoint.records:  # ~1 record an event: the plain call, the queue-full wait aside
                try:
                    if r.partition is None:
                        produce(r.topic, r.value, r.key)
                    else:
                        produce(r.topic, r.value, r.key, r.partition)
                except BufferError:
                    self._produce(r.topic, r.key, r.value, r.partition)
            offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(checkpoint.offsets.items())]
            if self.faults is not None:
                self.faults.before_commit()
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, group, 60)
            self._commit_with_retry()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.txn_requires_abort():
                self._abort()
                raise CommitFailed(str(err)) from exc
            raise  # fatal (fenced by a newer producer with our id, ...): the process must go

    def _commit_with_retry(self) -> None:
        for attempt in range(10):
            try:
                self.producer.commit_transaction(60)
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.retriable() and attempt < 9:
                    log.warning("commit_transaction retry: %s", err)
                    continue
                raise

    def _abort(self) -> None:
        try:
            self.producer.abort_transaction(60)
        except KafkaException as exc:
            log.error("abort_transaction failed: %s", exc)
            raise

    def close(self) -> None:
        try:
            self.producer.flush(30)
        except KafkaException as exc:  # a fenced producer has nothing left to deliver
            log.warning("producer flush on close: %s", exc)


class TransactionCommitter:
    """The loop's committer (core/loop.py) on the transactional engine: one
    thread runs `KafkaOutput.commit`, one checkpoint at a time. The
    consumer's group metadata (member id and generation: what fences a
    zombie's offsets) is read on the loop's thread when a checkpoint is
    handed over -- the generation its batch was read in -- so the commit
    thread never calls the consumer while the loop consumes, and a batch read
    before a rebalance cannot commit under the generation after it."""

    def __init__(self, output: KafkaOutput) -> None:
        self.output = output
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="compstream-commit")

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[None]:
        if fn != self.output.commit or len(args) != 1:
            raise TypeError("TransactionCommitter runs KafkaOutput.commit(checkpoint) only")
        group = self.output.consumer.consumer_group_metadata()
        return self._pool.submit(self.output.commit, args[0], group)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
