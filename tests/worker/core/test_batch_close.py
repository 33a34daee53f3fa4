"""When the loop closes a batch (core/loop.py, `fill`): below saturation as
soon as the sources are read to their ends and the drained floor has passed;
with a backlog not before the batch time; with nothing to apply at the batch
time. A fake clock moves 5 ms per reading, so the rule, not the machine's
speed, decides."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Iterable

from compstream.codec import encode_event
from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.domain.events import Usage
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.core.loop import BATCH_DRAINED_S, BATCH_WITHIN_S, CheckpointLoop
from compstream.worker.core.memory import MemoryInput, MemoryLog, MemoryOutput
from compstream.worker.core.ports import Polled, TopicPartition
from compstream.worker.messages import EndOfInput, SourceMessage

TOPICS = Topics.with_prefix("close")
OCT = datetime(2026, 10, 1, tzinfo=timezone.utc)


class FineClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.005
        return self.t


class EveryPoll(MemoryInput):
    """Each poll returns every unread message of every partition (up to the
    bound) and the end signals; `pretend_backlog` reports records not yet
    fetched, as a partition's high watermark ahead of the fetch would."""

    pretend_backlog: set[TopicPartition] = set()

    def poll(self, max_messages: int, timeout_s: float) -> list[Polled]:
        out, self._pending = self._pending, []
        for tp in sorted(self.position):
            records = self.log.records.get(tp, [])
            start = self.position[tp]
            stop = min(len(records), start + max_messages)
            for offset in range(start, stop):
                key, value = records[offset]
                out.append(SourceMessage(tp[0], tp[1], offset, key, value or b"", self.timestamp))
            self.position[tp] = stop
            out.append(EndOfInput(tp[0], tp[1], stop))
        return out

    def backlog(self, partitions: Iterable[TopicPartition]) -> set[TopicPartition]:
        return set(partitions) & self.pretend_backlog


def _loop(usage_events: int, backlog: set[TopicPartition]) -> tuple[CheckpointLoop, FineClock]:
    log = MemoryLog(1)
    for n in range(usage_events):
        usage = Usage(f"u{n}", "alice", "openai", "gpt", OCT + timedelta(minutes=n), 10, 5, 0, 0, 1_000)
        log.append(TOPICS.usage, b"alice", encode_event(usage))
    source = EveryPoll(log, (TOPICS.usage, TOPICS.grants), random.Random(1), OCT)
    source.pretend_backlog = backlog
    source.assign([(TOPICS.usage, 0), (TOPICS.grants, 0)])
    clock = FineClock()
    config = CoreConfig(TOPICS, "w", 1, 6 * 3600, BOOK_BYTES_MAX)
    loop = CheckpointLoop(lambda: LedgerCore(config), source, MemoryOutput(log), idle_s=1e9, clock=clock)
    return loop, clock


def _fill_s(loop: CheckpointLoop, clock: FineClock) -> float:
    t0 = clock.t
    loop.fill()
    return clock.t - t0


def test_a_drained_batch_closes_after_the_floor_not_the_batch_time():
    loop, clock = _loop(usage_events=5, backlog=set())
    took_s = _fill_s(loop, clock)
    assert BATCH_DRAINED_S <= took_s < BATCH_WITHIN_S
    assert loop.inputs.buffered() == 5
    checkpoint = loop.run_once()  # and the batch applies them
    assert checkpoint is not None and checkpoint.stats.applied == 5


def test_a_backlog_keeps_filling_past_the_floor():
    loop, clock = _loop(usage_events=5, backlog={(TOPICS.usage, 0)})
    assert _fill_s(loop, clock) >= BATCH_WITHIN_S


def test_nothing_to_apply_waits_for_the_batch_time():
    loop, clock = _loop(usage_events=0, backlog=set())
    assert _fill_s(loop, clock) >= BATCH_WITHIN_S
