"""When the loop closes a batch (core/loop.py, `fill`): below saturation as
soon as the sources are read to their ends and the drained floor has passed;
with a backlog not before the batch time; with nothing to apply at the batch
time; under a live flow once what the sources held at the floor is read. A
fake clock moves 5 ms per reading, so the rule, not the machine's speed,
decides."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from compstream.codec import encode_event
from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.domain.events import Usage
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.core.loop import BATCH_DRAINED_S, BATCH_WITHIN_S, CheckpointLoop
from compstream.worker.core.memory import MemoryInput, MemoryLog, MemoryOutput
from compstream.worker.core.ports import Polled
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
    """Each poll returns up to `per_poll` unread messages of every partition
    and the end signals; with `flow`, that many more usage records reach the
    usage partition after each poll, as under a live load (the broker's end
    always ahead of what poll returned: a fetch in flight)."""

    per_poll = 2_000
    flow = 0

    def poll(self, max_messages: int, timeout_s: float) -> list[Polled]:
        out, self._pending = self._pending, []
        for tp in sorted(self.position):
            records = self.log.records.get(tp, [])
            start = self.position[tp]
            stop = min(len(records), start + min(max_messages, self.per_poll))
            for offset in range(start, stop):
                key, value = records[offset]
                out.append(SourceMessage(tp[0], tp[1], offset, key, value or b"", self.timestamp))
            self.position[tp] = stop
            out.append(EndOfInput(tp[0], tp[1], stop))
        _publish(self.log, self.flow, first=len(self.log.records.get((TOPICS.usage, 0), [])))
        return out


def _publish(log: MemoryLog, usage_events: int, first: int = 0) -> None:
    for n in range(first, first + usage_events):
        usage = Usage(f"u{n}", "alice", "openai", "gpt", OCT + timedelta(minutes=n), 10, 5, 0, 0, 1_000)
        log.append(TOPICS.usage, b"alice", encode_event(usage))


def _loop(usage_events: int, per_poll: int = 2_000, flow: int = 0) -> tuple[CheckpointLoop, FineClock]:
    log = MemoryLog(1)
    _publish(log, usage_events)
    source = EveryPoll(log, (TOPICS.usage, TOPICS.grants), random.Random(1), OCT)
    source.per_poll, source.flow = per_poll, flow
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
    loop, clock = _loop(usage_events=5)
    took_s = _fill_s(loop, clock)
    assert BATCH_DRAINED_S <= took_s < BATCH_WITHIN_S
    assert loop.inputs.buffered() == 5
    checkpoint = loop.run_once()  # and the batch applies them
    assert checkpoint is not None and checkpoint.stats.applied == 5


def test_a_backlog_keeps_filling_past_the_floor_until_it_is_read():
    loop, clock = _loop(usage_events=60, per_poll=1)  # ~10 ms a poll: 60 polls
    assert _fill_s(loop, clock) >= BATCH_WITHIN_S
    assert loop.inputs.buffered() == 60


def test_a_live_flow_closes_once_what_was_there_at_the_floor_is_read():
    # The end moves on with every poll: waiting for it would fill to the
    # batch time and past it (BACKLOG_WITHIN_S); what came after the floor
    # waits for the next batch.
    loop, clock = _loop(usage_events=5, flow=3)
    took_s = _fill_s(loop, clock)
    assert BATCH_DRAINED_S <= took_s < BATCH_WITHIN_S
    written = len(loop.source.log.records[(TOPICS.usage, 0)])
    assert 5 <= loop.inputs.buffered() < written


def test_nothing_to_apply_waits_for_the_batch_time():
    loop, clock = _loop(usage_events=0)
    assert _fill_s(loop, clock) >= BATCH_WITHIN_S


def test_the_memory_input_counts_a_backlog_below_the_ends_it_is_given():
    log = MemoryLog(1)
    _publish(log, 3)
    source = MemoryInput(log, (TOPICS.usage, TOPICS.grants), random.Random(1), OCT)
    tps = [(TOPICS.usage, 0), (TOPICS.grants, 0)]
    source.assign(tps)
    assert source.ends(tps) == {(TOPICS.usage, 0): 3, (TOPICS.grants, 0): 0}
    assert source.backlog(tps) == {(TOPICS.usage, 0)}
    source.position[(TOPICS.usage, 0)] = 2
    assert source.backlog(tps, {(TOPICS.usage, 0): 3}) == {(TOPICS.usage, 0)}
    assert source.backlog(tps, {(TOPICS.usage, 0): 2}) == set()
    assert source.backlog(tps, {(TOPICS.grants, 0): 0}) == {(TOPICS.usage, 0)}  # no bound given for usage
