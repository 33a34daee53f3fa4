"""The ordered batch protocol, once, for every engine:

    poll (assignment changes first) -> buffer per task (sync.TaskInputs)
    -> take what may be applied -> LedgerCore.step -> OutputSide.commit

A batch closes at `batch_events_max` applicable messages, after
`batch_within_s`, or once `batch_drained_s` has passed and the sources are
read to the ends they had then (the backlog; what arrives later waits for
the next batch), whichever comes first: below saturation a batch does not
wait for messages that are not there, while a backlog still fills whole
batches. Assignment: a revoked partition's
books and buffers are dropped; an assigned one is restored from the changelog
and its committed positions before any of its messages is applied.

With a `committer` (an executor), one commit is in flight while the next
batch is filled and stepped: the loop waits for it before handing over the
next checkpoint (and before any assignment change), so the output side
still sees one checkpoint at a time, in order. A step runs ahead of what is
committed only in memory: the web view shows a checkpoint once its own
commit is done, and a failed commit throws away the core, with the step
made on top of it, and restores from the changelog. Measured on the
transactional engine (bench/profile_notes.md, 2026-12-07): p99 produce ->
visible balance at 10k ev/s x0.84-0.91, sustained over a 1M-event backlog
x0.99-1.07 (within the machine's noise), peak RSS lower.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any, Callable, Protocol

from compstream.config import BATCH_EVENTS_MAX_TRANSACTIONAL
from compstream.worker.core.checkpoint import LedgerCore
from compstream.worker.core.idle import IdleRule
from compstream.worker.core.ports import (
    Assigned,
    Checkpoint,
    CommitFailed,
    InputSide,
    OutputSide,
    Revoked,
    TopicPartition,
)
from compstream.worker.core.sync import TaskInputs
from compstream.worker.messages import EndOfInput, SourceMessage
from compstream.worker.processor import BATCH_MESSAGES_MAX

log = logging.getLogger(__name__)

BATCH_WITHIN_S = 0.15
BATCH_DRAINED_S = 0.02  # the least a drained batch waits (each batch costs a transaction)
POLL_MESSAGES_MAX = 2_000
MERGE_MESSAGES_MAX = 5_000  # candidates merged per checkpoint
BACKLOG_WITHIN_S = 2.0  # how much longer a batch may wait for a backlog to arrive
CANDIDATES_BUFFERED_MAX = 20_000  # past it the candidates partition is paused


class Committer(Protocol):
    """Runs a commit off the loop (concurrent.futures.Executor's submit)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any: ...


class InFlight:
    """A checkpoint handed to the committer; `wait` blocks until its commit
    is done and keeps the outcome (None, or what the commit raised)."""

    def __init__(self, future: Any, checkpoint: Checkpoint, started: float):
        self.future = future
        self.checkpoint = checkpoint
        self.started = started  # the loop's clock when its batch's fill began
        self.done = False
        self.error: BaseException | None = None

    def wait(self) -> None:
        if not self.done:
            try:
                self.future.result()
            except BaseException as exc:  # noqa: BLE001 - kept, and acted on by the loop
                self.error = exc
            self.done = True


class CheckpointLoop:
    def __init__(self, make_core: Callable[[], LedgerCore], source: InputSide, output: OutputSide,
                 *, idle_s: float, batch_events_max: int = BATCH_EVENTS_MAX_TRANSACTIONAL,
                 batch_within_s: float = BATCH_WITHIN_S, batch_drained_s: float = BATCH_DRAINED_S,
                 clock: Callable[[], float] = time.monotonic,
                 idle_advance_s: float = 0.0, wall_clock: Callable[[], datetime] | None = None,
                 committer: Committer | None = None):
        """`idle_advance_s`, `wall_clock`: the idleness rule (core/idle.py).
        `committer`: commit each checkpoint there, one in flight (above)."""
        self.idle = IdleRule(idle_advance_s, clock, wall_clock)
        if not 1 <= batch_events_max <= BATCH_MESSAGES_MAX:
            raise ValueError(f"batch_events_max must be 1..{BATCH_MESSAGES_MAX}")
        if not 0 < batch_drained_s <= batch_within_s:
            raise ValueError("batch_drained_s must be > 0 and <= batch_within_s")
        self.make_core = make_core
        self.core = make_core()
        self.source = source
        self.output = output
        self.clock = clock
        self.batch_events_max = batch_events_max
        self.batch_within_s = batch_within_s
        self.batch_drained_s = batch_drained_s
        topics = self.core.config.topics
        self.inputs = TaskInputs(topics.usage, topics.grants, idle_s=idle_s)
        self.assigned: set[TopicPartition] = set()
        self.paused: set[TopicPartition] = set()
        self.commits = 0
        self.aborts = 0
        self.restore_s_last = 0.0
        self.restore_records_total = 0  # books changelog records read by every restore (compaction keeps it small)
        self.candidates: list[SourceMessage] = []  # leaderboard candidates (the merge's input)
        self.sought: dict[TopicPartition, int] = {}  # re-positioned during the current poll's results
        self.committer = committer
        self.in_flight: InFlight | None = None
        self.batch_s_last = 0.0  # the last committed batch: its fill's start to its commit's end

    # -- assignment ---------------------------------------------------------

    def _assigned(self, partitions: tuple[TopicPartition, ...]) -> None:
        t0 = self.clock()
        self.assigned |= set(partitions)
        committed = self.source.committed(partitions)
        candidates = self.core.config.topics.leaderboard_candidates
        if (candidates, 0) in partitions:
            if self.core.leaderboards is None:
                raise RuntimeError("assigned the leaderboard candidates with leaderboards off")
            self.core.restore_merge(self.source.changelog(self.core.leaderboards.merge_changelog, 0),
                                    {tp: o for tp, o in committed.items() if tp[0] == candidates})
            log.info("leaderboard merge restored")
        sources = {p for t, p in partitions if t != candidates}
        for p in sorted(sources):
            mine = {tp: o for tp, o in committed.items() if tp[1] == p and tp[0] != candidates}
            if p in self.core.owned:
                self.core.positions.update(mine)
                continue
            books_topic, *lb_topic = self.core.changelogs(p)
            books, records = self.core.restore(p, self.source.changelog(books_topic, p), mine,
                                               self.source.changelog(lb_topic[0], p) if lb_topic else ())
            self.restore_records_total += records
            log.info("partition %d restored: %d books from %d changelog records", p, books, records)
            # The changelog's positions differ from the group's commits only
            # after another engine ran (Faust commits lazily, and may commit
            # offsets it skipped): read from where the state says.
            moved = {tp: o for tp, o in self.core.positions.items()
                     if tp[1] == p and tp in partitions and o != committed.get(tp)}
            if moved:
                log.warning("partition %d: positions %s differ from the group's commits %s; seeking",
                            p, moved, {tp: committed.get(tp) for tp in moved})
                self.source.seek(dict(moved))
                # Messages fetched from the commits before the seek may still
                # come in the rest of this poll's results: dropped (the seek
                # discards what is fetched and not yet returned).
                self.sought.update(moved)
        self.restore_s_last = self.clock() - t0

    def _revoked(self, partitions: tuple[TopicPartition, ...]) -> None:
        self.assigned -= set(partitions)
        self.paused -= set(partitions)

        candidates = self.core.config.topics.leaderboard_candidates
        if (candidates, 0) in partitions:
            self.candidates.clear()
            self.core.forget_merge()
        sources = tuple(tp for tp in partitions if tp[0] != candidates)
        for topic, p in sources:
            self.inputs.drop_partition(topic, p)
        for p in {p for _, p in sources}:
            if not any(tp[1] == p and tp[0] != candidates for tp in self.assigned):
                self.core.forget(p)

    def reset(self) -> None:
        """After a failed commit: state back to what is committed."""
        self.aborts += 1
        self.core = self.make_core()
        self.inputs.clear()
        self.candidates.clear()
        assigned = tuple(sorted(self.assigned))
        self.assigned = set()
        self._assigned(assigned)
        committed = self.source.committed(assigned)
        self.source.seek({tp: committed.get(tp) for tp in assigned})

    # -- the loop -----------------------------------------------------------

    def fill(self) -> None:
        """Poll until a batch's worth is buffered or the batch time is up."""
        started = self.clock()
        deadline = started + self.batch_within_s
        topics = self.core.config.topics
        # The backlog a batch waits for is what the sources held when its
        # drained floor passed. Under a live load a fetch is always in
        # flight, so the broker's end is always a little ahead of what poll
        # returned: waiting for that moving end kept every live batch filling
        # to its batch time and on, and a cycle is about its fill / (1 - load):
        # it set the latency (bench/profile_notes.md, 2026-12-08).
        ends: dict[TopicPartition, int] | None = None
        while True:
            now = self.clock()
            # consume() returns at POLL_MESSAGES_MAX or its timeout, not when
            # the fetched messages run out: short slices, or a light load waits.
            wait_s = max(0.0, min(deadline - now, self.batch_drained_s))
            self.sought.clear()
            for item in self.source.poll(POLL_MESSAGES_MAX, wait_s):
                if isinstance(item, Assigned):
                    self._wait_in_flight()  # a restore reads the changelog that commit writes
                    self._assigned(item.partitions)
                elif isinstance(item, Revoked):
                    self._wait_in_flight()
                    self._revoked(item.partitions)
                elif isinstance(item, (SourceMessage, EndOfInput)):
                    tp = (item.topic, item.partition)
                    if tp not in self.assigned:
                        continue
                    if tp in self.sought:
                        continue  # fetched before the seek
                    if item.topic == topics.leaderboard_candidates:
                        if isinstance(item, SourceMessage):
                            self.candidates.append(item)
                    else:
                        self.inputs.add(item)
                        if isinstance(item, SourceMessage):
                            self.idle.touch(item.partition)
            grants = self.core.config.topics.grants
            for tp in self.source.backlog([tp for tp in self.assigned if tp[0] == grants]):
                self.inputs.mark_backlog(*tp)
            self._flow_control()
            if self.inputs.buffered() + len(self.candidates) >= self.batch_events_max:
                return
            now = self.clock()
            if ends is None and now >= started + self.batch_drained_s:
                ends = self.source.ends(self._sources())
            # A batch is one order-independent unit (late is judged against
            # the watermark it starts with): while the sources still hold a
            # backlog, keep reading it into this batch, up to its bound.
            if now >= deadline and (now >= deadline + BACKLOG_WITHIN_S or not self._backlog(ends)):
                return
            if ends is not None and self.inputs.buffered() and not self._backlog(ends):
                return

    def _sources(self) -> list[TopicPartition]:
        candidates = self.core.config.topics.leaderboard_candidates
        return [tp for tp in self.assigned if tp[0] != candidates]

    def _backlog(self, below: dict[TopicPartition, int] | None) -> bool:
        return bool(self.source.backlog(self._sources(), below))

    def _flow_control(self) -> None:
        candidates = self.core.config.topics.leaderboard_candidates
        full = {tp for tp in self.assigned if tp[0] != candidates and self.inputs.over_bound(*tp, self.core.replay)}
        if len(self.candidates) >= CANDIDATES_BUFFERED_MAX:
            full |= {tp for tp in self.assigned if tp[0] == candidates}
        if full - self.paused:
            self.source.pause(full - self.paused)
        if self.paused - full:
            self.source.resume(self.paused - full)
        self.paused = full

    def run_once(self) -> Checkpoint | None:
        """One batch: fill, step, commit. Returns the checkpoint whose commit
        completed in this call, if any: with a committer, the one before, as
        a receipt (its offsets and stats, no records)."""
        started = self.clock()
        self.fill()
        messages = self.inputs.take(self.batch_events_max, self.clock(), self.core.replay)
        candidates, self.candidates = self.candidates[:MERGE_MESSAGES_MAX], self.candidates[MERGE_MESSAGES_MAX:]
        resend = self.core.leaderboards is not None and self.core.leaderboards.resend
        idle = self.idle.due(self.core.owned, self.inputs)
        if not messages and not candidates and not resend and not idle:
            return self._settle()
        checkpoint = self.core.step(messages, lagging=self.inputs.lagging(), candidates=candidates, idle=idle)
        if self.committer is None:
            try:
                self.output.commit(checkpoint)
            except CommitFailed as exc:
                self._restore_after(exc)
                return None
            self._committed(started)
            return checkpoint
        aborts = self.aborts
        done = self._settle()
        if self.aborts != aborts:
            return None  # the commit before failed: this step was made on the core just thrown away
        # The loop keeps a receipt (offsets, stats), not the records: those are
        # freed once the commit has sent them, not after the next step (a
        # backlog's batch holds ~100 MB of them: +130 MiB peak RSS measured).
        receipt = Checkpoint(records=[], offsets=checkpoint.offsets, stats=checkpoint.stats)
        self.in_flight = InFlight(self.committer.submit(self.output.commit, checkpoint), receipt, started)
        return done

    def finish(self) -> Checkpoint | None:
        """Before the engine stops: wait for the commit in flight. A failed
        one is only logged (the next owner processes its batch again)."""
        return self._settle(restore=False)

    def _wait_in_flight(self) -> None:
        if self.in_flight is not None:
            self.in_flight.wait()

    def _settle(self, restore: bool = True) -> Checkpoint | None:
        """The commit in flight, done: shown, or (`restore`) state restored if
        it failed; anything else it raised (fenced, a crash) is raised here."""
        in_flight, self.in_flight = self.in_flight, None
        if in_flight is None:
            return None
        in_flight.wait()
        if isinstance(in_flight.error, CommitFailed):
            if restore:
                self._restore_after(in_flight.error)
            else:
                log.warning("last checkpoint not committed (%s)", in_flight.error)
            return None
        if in_flight.error is not None:
            raise in_flight.error
        self._committed(in_flight.started)
        return in_flight.checkpoint

    def _committed(self, started: float) -> None:
        self.core.committed()
        self.commits += 1
        self.batch_s_last = self.clock() - started

    def _restore_after(self, exc: CommitFailed) -> None:
        log.warning("checkpoint not committed (%s): restoring state from the changelog", exc)
        self.reset()
