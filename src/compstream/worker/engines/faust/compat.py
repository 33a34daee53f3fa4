"""The Faust engine's adapter: every use of Faust's and aiokafka's private
API lives here, and `check_private_api` verifies at start-up that each one
still exists (a rename in either library must stop the worker loudly, not
switch a workaround off silently).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Awaitable, Callable, Iterable, Iterator

from faust.types import TP

# The app and its consumer are typed Any here: everything this module touches
# is private API that Faust's own types do not declare (checked at start-up).
AgentFn = Callable[[Any], Awaitable[None]]

log = logging.getLogger(__name__)


def exit_on_crash(name: str, exit_code: int) -> Callable[[AgentFn], AgentFn]:
    """Decorate an agent: Faust keeps a crashed agent's process alive but idle,
    which would also stall every commit of the shared source topics. Exit
    instead: nothing unacked was committed, so a restarted worker replays it."""

    def wrap(fn: AgentFn) -> AgentFn:
        async def agent(stream: Any) -> None:
            try:
                await fn(stream)
            except Exception:
                log.exception("%s agent crashed; exiting so a supervisor restarts the worker", name)
                logging.shutdown()
                os._exit(exit_code)

        agent.__name__ = fn.__name__
        return agent

    return wrap


async def seek(app: Any, tp: TP, offset: int) -> None:
    """Seek on the consumer's own thread. Faust's `consumer.seek` calls
    aiokafka's seek from the event loop's thread, while the consumer thread
    may be inside `fetched_records`; that then fails with a KeyError and the
    worker crashes (seen in a two-worker benchmark run, during a rebalance).
    `seek_wait` runs the same seek, and Faust's read-offset update, there."""
    try:
        await app.consumer.seek_wait({tp: offset})
    except Exception as exc:  # e.g. revoked meanwhile: the guard sees the gap again
        log.warning("seek %s[%d] -> %d failed (%r); the position guard retries", tp.topic, tp.partition, offset, exc)
        return
    # Faust's fetch loop drops messages below its read offset. When the seek
    # comes from a batch, that loop may resume after it (it was handing over
    # the message that revealed the gap) and set the read offset past the
    # seek again; the re-read would then be dropped. Lowering it again only
    # lets more through: what was processed already, the guard drops.
    read = getattr(app.consumer, "_read_offset", None)
    if read is not None and (read.get(tp) or 0) > offset:
        read[tp] = offset


def runs_with_repeats(numbers: Iterable[int]) -> Iterator[list[int]]:
    """Runs of consecutive numbers in sorted `numbers`, a repeat staying in
    its run: [4, 5, 5, 6, 9] -> [4, 5, 5, 6], [9]."""
    run: list[int] = []
    for n in numbers:
        if run and n > run[-1] + 1:
            yield run
            run = []
        run.append(n)
    if run:
        yield run


def keep_commits_moving() -> None:
    """Faust's commit takes the first run of consecutive offsets of a
    partition's acked list (`Consumer._new_offset`), after adding to it every
    offset it recorded as skipped (its `_gap`). Offsets the position guard
    had re-read after a skip are then in the list twice; with its run
    finder a repeat ends a run, so each commit moved one offset (seen in a
    two-worker benchmark: a partition's commit 244k offsets behind its
    processing, a few offsets a second; tests/faults/test_skipped.py). A
    repeated offset is acked all the same: keep it in its run."""
    import faust.transport.consumer as consumer_module

    setattr(consumer_module, "consecutive_numbers", runs_with_repeats)  # noqa: B010 (a private module attribute)


# (where, attribute): what this module and worker/engines/faust/app.py and
# faults.py reach into. Checked on the classes, or on a consumer instance.
PRIVATE_MODULE_ATTRS = (
    ("faust.transport.consumer", "consecutive_numbers"),  # keep_commits_moving
)
PRIVATE_CLASS_ATTRS = (
    ("faust.transport.consumer", "Consumer", "_new_offset"),  # keep_commits_moving's premise
)
PRIVATE_CONSUMER_ATTRS = ("_committed_offset", "_read_offset", "_thread", "seek_wait", "highwater")
PRIVATE_THREAD_ATTRS = ("commit", "_ensure_consumer", "call_thread")


class FaustApiChanged(RuntimeError):
    """A private attribute the Faust engine relies on is gone."""


def check_private_api(app: Any) -> None:
    """Raise FaustApiChanged naming every missing private attribute."""
    import importlib

    missing = []
    for module, attr in PRIVATE_MODULE_ATTRS:
        if not hasattr(importlib.import_module(module), attr):
            missing.append(f"{module}.{attr}")
    for module, cls, attr in PRIVATE_CLASS_ATTRS:
        if not hasattr(getattr(importlib.import_module(module), cls), attr):
            missing.append(f"{module}.{cls}.{attr}")
    consumer = app.consumer
    missing += [f"consumer.{a}" for a in PRIVATE_CONSUMER_ATTRS if not hasattr(consumer, a)]
    thread = getattr(consumer, "_thread", None)
    missing += [f"consumer._thread.{a}" for a in PRIVATE_THREAD_ATTRS if not hasattr(thread, a)]
    if missing:
        raise FaustApiChanged("the Faust engine needs private attributes this faust-streaming/aiokafka lacks: "
                              + ", ".join(missing) + "; pin faust-streaming to a tested version "
                              "or run COMPSTREAM_ENGINE=transactional")


def committed_offsets(app: Any) -> dict[TP, int | None]:
    """Faust's last committed offset per partition (it commits offsets it saw skipped)."""
    committed: dict[TP, int | None] = app.consumer._committed_offset
    return committed


async def commit_now(app: Any, offsets: dict[TP, int]) -> bool:
    """Commit on the consumer's thread, bypassing Faust's acked-offset runs;
    False if the group coordinator rejects it (a rebalance took a partition)."""
    return bool(await app.consumer._thread.commit(offsets))


def highwater_or_none(app: Any, tp: TP) -> int | None:
    try:
        hw = app.consumer.highwater(tp)
        return None if hw is None else int(hw)
    except Exception:  # not fetched yet
        return None


STALL_CHECK_EVERY_S = 1.0
STALL_IDLE_S = 3.0  # idle this long with a backlog below the high-water mark: seek back


def watch_stalls(app: Any, name: str, busy: "Activity", expected_of: Callable[[str, int], int | None],
                 topics: set[str], clock: Callable[[], float] = time.monotonic,
                 lose_seek: Callable[[], bool] = lambda: False) -> None:
    """Add a Faust timer that seeks back assigned partitions of `topics` whose
    expected offset is below the high-water mark while the agent has been idle
    for STALL_IDLE_S (see positions.stalled_seeks)."""
    from compstream.worker.positions import stalled_seeks

    sought: dict[tuple[str, int], tuple[int, int, float, float, int]] = {}
    generation = [app.rebalancing_count]

    async def check() -> None:
        if generation[0] != app.rebalancing_count:
            # A rebalance repositions partitions (and may skip a re-read once
            # more): an earlier seek says nothing about the new assignment.
            generation[0] = app.rebalancing_count
            sought.clear()
        idle_for_s = busy.idle_for_s()
        if idle_for_s is None or idle_for_s < STALL_IDLE_S or not app.flow_control.is_active():
            return
        if app.rebalancing:  # idle because of the rebalance; Faust positions the partitions itself
            return
        try:
            assigned = [tp for tp in app.consumer.assignment() if tp.topic in topics]
        except Exception:  # consumer not started yet
            return
        expected = {}
        for tp in assigned:
            nxt = expected_of(tp.topic, tp.partition)
            if nxt is not None:  # nothing known yet: no stall to judge
                expected[(tp.topic, tp.partition)] = nxt
        highwater = {(tp.topic, tp.partition): highwater_or_none(app, tp) for tp in assigned}
        for (topic, partition), offset in stalled_seeks(expected, highwater, sought, clock()).items():
            attempt = sought[(topic, partition)][4]
            log.warning("%s: %s[%d] has messages from %d (high water %d) but none arrived for %.0fs; "
                        "seeking back (attempt %d)", name, topic, partition, offset,
                        highwater[(topic, partition)], idle_for_s, attempt)
            if not lose_seek():  # fault injection (faults.py)
                await seek(app, TP(topic, partition), offset)

    app.timer(STALL_CHECK_EVERY_S, name=f"{name}-stall-check")(check)


class Activity:
    """Whether an agent is inside a batch, and since when it has been idle."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.depth = 0  # nested: a restore inside a batch
        self.since_s = clock()

    @property
    def busy(self) -> bool:
        return self.depth > 0

    def start(self) -> None:
        self.depth += 1

    def stop(self) -> None:
        self.depth -= 1
        if self.depth < 0:
            raise RuntimeError("Activity stopped more often than started")
        self.since_s = self.clock()

    def idle_for_s(self) -> float | None:
        return None if self.busy else self.clock() - self.since_s

    def __enter__(self) -> "Activity":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
