"""Bounded reads of Kafka topics, and the source topics as canonical events.

Every read captures the end offsets when it starts and stops there, so a read
of a live topic terminates and is reproducible: records appended meanwhile
belong to the next run. A read that makes no progress for `idle_timeout_s`
raises instead of hanging (broker gone, partition offline).

Decoding mirrors `LedgerProcessor._apply` (decode, validate, key == engineer)
so a replay rejects exactly what the worker dead-letters; each rejected
record is reported with its coordinates, never skipped silently.
"""

from __future__ import annotations

import re
import time
from array import array
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Container, Iterable, Iterator

import kafka.errors as kerr
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from compstream.codec import DecodeError, decode_event
from compstream.domain.events import Event, EventError

POLL_RECORDS_MAX = 2_000  # bounds what one poll holds in memory
POLL_MS = 500
IDLE_TIMEOUT_S = 30.0


class SourceError(RuntimeError):
    """The topics cannot be read as asked (unreachable, unknown topic, stalled)."""


@dataclass(frozen=True, slots=True)
class BadMessage:
    topic: str
    partition: int
    offset: int
    stage: str
    reason: str

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}: {self.stage}: {self.reason}"

    def to_dict(self) -> dict:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                "stage": self.stage, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """Offsets [start, stop) of one partition; stop is exclusive like Kafka's end offset."""

    topic: str
    partition: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return max(0, self.stop - self.start)


def open_consumer(bootstrap: str, timeout_s: float = 30.0) -> KafkaConsumer:
    """A group-less consumer: it commits nothing, so reading never moves the
    worker. It reads committed records only: the transactional engine writes
    balances, dead letters and history in transactions, and a record of an
    open or aborted one is nothing a downstream reader may count (its end
    offsets are then the last stable offsets)."""
    try:
        return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", request_timeout_ms=int(timeout_s * 1000) + 5000,
                             isolation_level="read_committed")
    except kerr.KafkaError as exc:
        raise SourceError(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc


def partitions_of(consumer: KafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    out: list[TopicPartition] = []
    for topic in topics:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise SourceError(f"topic {topic} does not exist (or has no partitions)")
        out.extend(TopicPartition(topic, p) for p in sorted(parts))
    return out


_SPEC = re.compile(r"^(?:(?:(?P<topic>[^=]+):)?(?P<partition>\d+)=)?(?P<offset>\d+)$")


def parse_offset_specs(values: Iterable[str]) -> dict[tuple[str | None, int | None], int]:
    """'N' (every partition), 'P=N' (partition P of each topic), 'TOPIC:P=N'."""
    out: dict[tuple[str | None, int | None], int] = {}
    for value in values:
        m = _SPEC.match(value.strip())
        if m is None:
            raise ValueError(f"offset spec {value!r}: expected N, P=N or TOPIC:P=N")
        partition = m.group("partition")
        out[(m.group("topic"), None if partition is None else int(partition))] = int(m.group("offset"))
    return out


def _lookup(specs: dict, tp: TopicPartition) -> int | None:
    for key in ((tp.topic, tp.partition), (None, tp.partition), (None, None)):
        if key in specs:
            return specs[key]
    return None


def resolve_ranges(consumer: KafkaConsumer, topics: Iterable[str], *,
                   from_offsets: dict | None = None, to_offsets: dict | None = None,
                   since: datetime | None = None, until: datetime | None = None) -> list[PartitionRange]:
    """Per partition: [max(begin, from, since), min(end, to, until)). `since`
    and `until` compare with the Kafka record timestamp (publish time), via
    offsets-for-times; they are not event times."""
    tps = partitions_of(consumer, topics)
    begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
    since_at = _offsets_for(consumer, tps, since)
    until_at = _offsets_for(consumer, tps, until)
    ranges = []
    for tp in tps:
        start, stop = begin[tp], end[tp]
        wanted_from = _lookup(from_offsets or {}, tp)
        wanted_to = _lookup(to_offsets or {}, tp)
        if wanted_from is not None:
            start = max(start, wanted_from)
        if wanted_to is not None:
            stop = min(stop, wanted_to)
        if since is not None:
            # None = no record at or after `since`: nothing to read here.
            start = max(start, end[tp] if since_at[tp] is None else since_at[tp].offset)
        if until is not None and until_at[tp] is not None:
            stop = min(stop, until_at[tp].offset)
        ranges.append(PartitionRange(tp.topic, tp.partition, start, max(start, stop)))
    return ranges


def _offsets_for(consumer: KafkaConsumer, tps: list[TopicPartition], when: datetime | None) -> dict:
    if when is None:
        return {}
    return consumer.offsets_for_times({tp: int(when.timestamp() * 1000) for tp in tps})


def read_ranges(consumer: KafkaConsumer, ranges: Iterable[PartitionRange],
                idle_timeout_s: float = IDLE_TIMEOUT_S) -> Iterator:
    """Yield the ConsumerRecords of every range (per-partition order kept)."""
    active = {TopicPartition(r.topic, r.partition): r for r in ranges if r.size}
    if not active:
        return
    consumer.assign(list(active))
    for tp, r in active.items():
        consumer.seek(tp, r.start)
    last_progress = time.monotonic()
    while active:
        batch = consumer.poll(timeout_ms=POLL_MS, max_records=POLL_RECORDS_MAX)
        if batch:
            last_progress = time.monotonic()
        for tp, records in batch.items():
            part = active.get(tp)
            if part is None:
                continue
            for record in records:
                if record.offset >= part.stop:
                    break
                yield record
        # Position, not the last record, decides: compaction and transaction
        # markers leave offset gaps, so the record at stop-1 may not exist.
        for tp in list(active):
            if consumer.position(tp) >= active[tp].stop:
                del active[tp]
                consumer.pause(tp)
        if active and time.monotonic() - last_progress > idle_timeout_s:
            left = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in active)
            raise SourceError(f"no progress for {idle_timeout_s:.0f}s reading {left}")


def decode_source(record: ConsumerRecord) -> Event:
    """A source record -> event; raises BadMessageError like the worker dead-letters."""
    try:
        event = decode_event(record.value)
    except DecodeError as exc:
        raise BadMessageError(f"decode:{exc.stage}", exc.reason) from exc
    except EventError as exc:
        raise BadMessageError("validate", str(exc)) from exc
    if record.key is None or record.key.decode("utf-8", "replace") != event.engineer_id:
        raise BadMessageError("route", f"message key {record.key!r} != engineer_id {event.engineer_id!r}")
    return event


class BadMessageError(ValueError):
    def __init__(self, stage: str, reason: str):
        self.stage, self.reason = stage, reason
        super().__init__(f"{stage}: {reason}")


class CoordMap:
    """Input position (index of an accepted event) -> Kafka coordinates, compactly
    (conflict reports name the record that lost)."""

    def __init__(self) -> None:
        self._topics: list[str] = []
        self._topic_ix: dict[str, int] = {}
        self._t, self._p, self._o = array("i"), array("i"), array("q")

    def add(self, topic: str, partition: int, offset: int) -> None:
        ix = self._topic_ix.get(topic)
        if ix is None:
            ix = self._topic_ix[topic] = len(self._topics)
            self._topics.append(topic)
        self._t.append(ix)
        self._p.append(partition)
        self._o.append(offset)

    def locate(self, position: int) -> tuple[str, int, int]:
        return self._topics[self._t[position]], self._p[position], self._o[position]


def source_events(consumer: KafkaConsumer, ranges: list[PartitionRange],
                  on_bad: Callable[[BadMessage], None], *, coords: CoordMap | None = None,
                  on_record: Callable[[], None] | None = None,
                  idle_timeout_s: float = IDLE_TIMEOUT_S,
                  skip: Container[tuple[str, int, int]] = ()) -> Iterator[Event]:
    """`skip`: (topic, partition, offset) of records to leave out unread."""
    for record in read_ranges(consumer, ranges, idle_timeout_s):
        if on_record is not None:
            on_record()
        if skip and (record.topic, record.partition, record.offset) in skip:
            continue
        try:
            event = decode_source(record)
        except BadMessageError as exc:
            on_bad(BadMessage(record.topic, record.partition, record.offset, exc.stage, exc.reason))
            continue
        if coords is not None:
            coords.add(record.topic, record.partition, record.offset)
        yield event
