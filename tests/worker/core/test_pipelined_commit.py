"""The loop with a committer (core/loop.py): one commit in flight while the
next batch is filled and stepped. The output side gets checkpoints one at a
time and in order, the web view shows a checkpoint only once its own commit
is done, a failed commit throws away the step made on top of it, and
`finish` lands the last one. The commits here run only when the loop waits
for them (core/memory.DeferredCommits): the latest a real commit completes."""

from __future__ import annotations

import random

from compstream.worker.core.memory import MemoryLog, MemoryOutput
from worker.core.scenario import scenario
from worker.core.test_protocol import (
    PARTITIONS,
    _drained,
    _loop,
    _publish,
    assert_balances_equal_replay,
    assert_view_is_committed,
)


def _published(seed: int = 7) -> list:
    return [e for _, e in scenario(seed, engineers=4, usage_per_engineer=6)]


def _until_in_flight(loop, limit: int = 100):
    """Run batches until one is stepped and its commit in flight."""
    for _ in range(limit):
        if loop.in_flight is not None:
            return loop.in_flight
        loop.run_once()
    raise AssertionError("no batch was stepped")


def _drain(loop, log, limit: int = 500) -> None:
    for _ in range(limit):
        loop.run_once()
        if _drained(log, loop) and loop.in_flight is None:
            return
    raise AssertionError("the loop did not drain the source topics")


class OrderedOutput(MemoryOutput):
    """Records the order checkpoints are handed over in."""

    def __init__(self, log: MemoryLog):
        super().__init__(log)
        self.handed: list[dict] = []

    def commit(self, checkpoint) -> None:
        self.handed.append(dict(checkpoint.offsets))
        super().commit(checkpoint)


def test_a_step_runs_ahead_of_its_commit_and_the_view_waits_for_the_commit():
    log = MemoryLog(PARTITIONS)
    output = OrderedOutput(log)
    loop = _loop(log, output, random.Random(1), events_max=5, pipelined=True)
    engineers = set()
    for event in _published():
        _publish(log, event)
        engineers.add(event.engineer_id)
    first = _until_in_flight(loop)  # the first batch: stepped, its commit in flight
    assert output.committed == 0 and loop.commits == 0
    assert_view_is_committed(loop.core, log, engineers)  # nothing shown yet
    done = loop.run_once()  # the next batch stepped (if any), then the first commit waited for
    assert done is first.checkpoint and output.committed == 1 and loop.commits == 1
    assert loop.in_flight is not first
    assert_view_is_committed(loop.core, log, engineers)  # the first shown, a second in flight not
    _drain(loop, log)
    # Handed over one at a time, in order: each partition's offsets only grow.
    last: dict = {}
    for offsets in output.handed:
        for tp, offset in offsets.items():
            assert offset > last.get(tp, 0), (tp, offset, last.get(tp))
            last[tp] = offset
    assert loop.commits == output.committed == len(output.handed)


def test_a_failed_commit_drops_the_step_made_on_top_of_it():
    events = _published(seed=8)
    log = MemoryLog(PARTITIONS)
    output = MemoryOutput(log)
    loop = _loop(log, output, random.Random(2), events_max=4, pipelined=True)
    for event in events:
        _publish(log, event)
    first = _until_in_flight(loop)
    while loop.in_flight is first or loop.in_flight is None:  # the first committed, a second in flight
        loop.run_once()
    assert output.committed == 1
    output.fail_next = True  # the second commit aborts ...
    assert loop.run_once() is None  # ... seen here, after the next batch was stepped on it
    assert loop.aborts == 1 and loop.in_flight is None and output.committed == 1
    _drain(loop, log)
    assert_balances_equal_replay(log, events, [])


def test_finish_lands_the_last_commit_and_only_logs_a_failed_one(caplog):
    log = MemoryLog(PARTITIONS)
    output = MemoryOutput(log)
    loop = _loop(log, output, random.Random(3), events_max=1_000, pipelined=True)
    for event in _published(seed=9):
        _publish(log, event)
    last = _until_in_flight(loop).checkpoint
    assert loop.finish() is last and output.committed == 1 and loop.in_flight is None

    for event in _published(seed=10):
        _publish(log, event)
    _until_in_flight(loop)
    output.fail_next = True
    committed = output.committed
    assert loop.finish() is None
    assert output.committed == committed and loop.aborts == 0  # not restored: the process is stopping
    assert "last checkpoint not committed" in caplog.text


def test_a_batch_is_timed_from_its_fill_to_its_own_commit():
    """`batch_s_last` (compstream_batch_seconds) spans the batch's fill, step
    and the next batch's fill and step its commit overlapped: not the call
    of `run_once` that happened to return it."""
    log = MemoryLog(PARTITIONS)
    loop = _loop(log, MemoryOutput(log), random.Random(3), events_max=5, pipelined=True)
    for event in _published(seed=3):
        _publish(log, event)
    for _ in range(100):
        before_first = loop.clock.t
        loop.run_once()
        if loop.in_flight is not None:
            break
    first = loop.in_flight
    assert first is not None and before_first < first.started <= loop.clock.t
    before_second = loop.clock.t
    assert loop.run_once() is first.checkpoint
    end = first.started + loop.batch_s_last  # the clock's reading when its commit was seen done
    assert before_second < end <= loop.clock.t


def test_a_batch_without_a_committer_is_timed_through_its_commit():
    log = MemoryLog(PARTITIONS)
    loop = _loop(log, MemoryOutput(log), random.Random(4), events_max=5)
    for event in _published(seed=4):
        _publish(log, event)
    for _ in range(100):
        before = loop.clock.t
        if loop.run_once() is not None:
            break
    assert 0 < loop.batch_s_last <= loop.clock.t - before
