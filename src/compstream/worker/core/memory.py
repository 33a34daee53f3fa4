"""In-memory input and output sides: a committed log per topic-partition and
consumer positions, with the same atomicity a Kafka transaction gives. For
tests of the protocol without a broker; the chooser decides how fetches
interleave and how much each one returns (Hypothesis drives it)."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any, Callable, Iterable

from compstream.worker.core.ports import Assigned, Checkpoint, CommitFailed, OutRecord, Polled, TopicPartition
from compstream.worker.messages import EndOfInput, SourceMessage, partition_of


class MemoryLog:
    """Committed records per topic-partition and committed group offsets."""

    def __init__(self, partitions: int):
        self.partitions = partitions
        self.records: dict[TopicPartition, list[tuple[bytes | None, bytes | None]]] = {}
        # Each record's timestamp, as Kafka's CreateTime (None: the reader's default).
        self.times: dict[TopicPartition, list[datetime | None]] = {}
        self.offsets: dict[TopicPartition, int] = {}

    def append(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
               timestamp: datetime | None = None) -> int:
        if partition is None:
            if key is None:
                raise ValueError("a record without key needs a partition")
            partition = partition_of(key.decode("utf-8"), self.partitions)
        log = self.records.setdefault((topic, partition), [])
        log.append((key, value))
        self.times.setdefault((topic, partition), []).append(timestamp)
        return len(log) - 1

    def timestamp(self, tp: TopicPartition, offset: int) -> datetime | None:
        times = self.times.get(tp, [])
        return times[offset] if offset < len(times) else None

    def read(self, topic: str, partition: int) -> list[tuple[bytes | None, bytes | None]]:
        return list(self.records.get((topic, partition), []))

    def topic_records(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        out = []
        for (t, _), log in sorted(self.records.items()):
            if t == topic:
                out += log
        return out


class MemoryInput:
    """`timestamp`: the time of records appended without one."""

    def __init__(self, log: MemoryLog, topics: tuple[str, ...], rng: random.Random, timestamp: datetime) -> None:
        self.log = log
        self.topics = topics
        self.rng = rng
        self.timestamp = timestamp
        self.position: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self._pending: list[Polled] = []
        self._eof_sent: set[TopicPartition] = set()

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        parts = tuple(sorted(partitions))
        for tp in parts:
            self.position[tp] = self.log.offsets.get(tp, 0)
            self._eof_sent.discard(tp)
        self._pending.append(Assigned(parts))

    def poll(self, max_messages: int, timeout_s: float) -> list[Polled]:
        out, self._pending = self._pending, []
        live = [tp for tp in sorted(self.position) if tp not in self.paused]
        if not live:
            return out
        tp = self.rng.choice(live)
        start = self.position[tp]
        log = self.log.records.get(tp, [])
        n = min(max_messages, self.rng.randint(0, 7), len(log) - start)
        for offset in range(start, start + n):
            key, value = log[offset]
            out.append(SourceMessage(tp[0], tp[1], offset, key, value if value is not None else b"",
                                     self.log.timestamp(tp, offset) or self.timestamp))
        self.position[tp] = start + n
        if self.position[tp] >= len(log):
            if n or tp not in self._eof_sent:
                out.append(EndOfInput(tp[0], tp[1], self.position[tp]))
                self._eof_sent.add(tp)
        else:
            self._eof_sent.discard(tp)
        return out

    def backlog(self, partitions: Iterable[TopicPartition],
                below: dict[TopicPartition, int] | None = None) -> set[TopicPartition]:
        ends = self.ends(partitions)
        if below:
            ends = {tp: min(end, below.get(tp, end)) for tp, end in ends.items()}
        return {tp for tp, end in ends.items() if self.position.get(tp, 0) < end}

    def ends(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log.records.get(tp, [])) for tp in partitions}

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log.offsets[tp] for tp in partitions if tp in self.log.offsets}

    def changelog(self, topic: str, partition: int) -> list[tuple[bytes, bytes | None]]:
        return [(k, v) for k, v in self.log.read(topic, partition) if k is not None]

    def seek(self, offsets: dict[TopicPartition, int | None]) -> None:
        for tp, offset in offsets.items():
            self.position[tp] = 0 if offset is None else offset
            self._eof_sent.discard(tp)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self.paused |= set(partitions)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self.paused -= set(partitions)


class Crash(Exception):
    """The process died (in a test): nothing of the current checkpoint landed."""


class MemoryOutput:
    """Applies a checkpoint atomically. `fail_next`: the next commit is
    refused (CommitFailed, like an aborted transaction); `crash_next`: the
    next commit raises Crash before anything lands."""

    def __init__(self, log: MemoryLog):
        self.log = log
        self.fail_next = False
        self.crash_next = False
        self.committed = 0

    def commit(self, checkpoint: Checkpoint) -> None:
        if self.crash_next:
            self.crash_next = False
            raise Crash()
        if self.fail_next:
            self.fail_next = False
            raise CommitFailed("injected abort")
        for r in checkpoint.records:
            self._append(r)
        self.log.offsets.update(checkpoint.offsets)
        self.committed += 1

    def _append(self, r: OutRecord) -> None:
        self.log.append(r.topic, r.key, r.value, r.partition)


class _Deferred:
    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]):
        self.fn, self.args = fn, args
        self.ran = False

    def result(self) -> Any:
        if self.ran:
            raise RuntimeError("a deferred commit is waited for once")
        self.ran = True
        return self.fn(*self.args)


class DeferredCommits:
    """A committer (core/loop.py) for in-memory tests: a submitted commit runs
    only when the loop waits for it, so it is in flight for the whole fill
    and step of the next batch -- the latest a real commit can complete --
    and every run is deterministic."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> _Deferred:
        return _Deferred(fn, args)
