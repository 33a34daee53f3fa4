"""The web view's books (core/committed.py): a step stages them, the
engine's commit shows them, a restore shows what the changelog holds, and a
revoked partition's books and times leave the view."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from compstream.codec import encode_event
from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.domain.book import EngineerBook
from compstream.domain.events import Usage
from compstream.domain.leaderboard import LeaderboardConfig
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.core.loop import CheckpointLoop
from compstream.worker.core.memory import Crash, MemoryInput, MemoryLog, MemoryOutput
from compstream.worker.messages import SourceMessage, partition_of
from support.checks import sentinels
from support.messages import record_time
from worker.core.scenario import LATENESS_S, START, Clock, scenario

TOPICS = Topics.with_prefix("view")
T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
PARTITIONS = 2
CONFIG = CoreConfig(TOPICS, "w", PARTITIONS, 6 * 3600, BOOK_BYTES_MAX)
LB_TOPICS = Topics.with_prefix("viewlb")
LB_CONFIG = CoreConfig(LB_TOPICS, "w", PARTITIONS, LATENESS_S, BOOK_BYTES_MAX,
                       LeaderboardConfig(k=3, lateness=timedelta(seconds=LATENESS_S), min_team_size=1))


def _messages(engineer: str, start: int, n: int, offset: int) -> list[SourceMessage]:
    p = partition_of(engineer, PARTITIONS)
    usage = [Usage(f"u-{engineer}-{start + i}", engineer, "openai", "gpt-4o", T0 + timedelta(minutes=start + i),
                   100, 10, 0, 0, 10**6) for i in range(n)]
    return [SourceMessage(TOPICS.usage, p, offset + i, engineer.encode(), encode_event(u), record_time(u, T0))
            for i, u in enumerate(usage)]


def _core() -> LedgerCore:
    core = LedgerCore(CONFIG)
    for p in range(PARTITIONS):
        core.restore(p, [], {})
    return core


def _taken(core: LedgerCore, engineer: str) -> int | None:
    data, _ = core.view.read(engineer)
    return None if data is None else EngineerBook.from_bytes(data).taken


def test_a_step_is_shown_only_once_committed():
    core = _core()
    core.step(_messages("alice", 0, 3, 0))
    assert _taken(core, "alice") is None and core.view.staged() == 1
    core.committed()
    assert _taken(core, "alice") == 3 and core.view.staged() == 0
    _, times = core.view.read("alice")
    p = partition_of("alice", PARTITIONS)
    assert times == (core.processor.stream_time[p], core.processor.watermark(p))

    core.step(_messages("alice", 3, 2, 3))
    assert _taken(core, "alice") == 3  # the next batch, in flight
    core.committed()
    assert _taken(core, "alice") == 5


def test_a_restore_shows_the_changelog_and_a_revocation_clears_the_partition():
    core = _core()
    core.step(_messages("alice", 0, 4, 0))
    core.committed()
    changelog = [(b"alice", core.books["alice"])]
    core.step(_messages("alice", 4, 1, 4))  # in flight when the partition is revoked
    p = partition_of("alice", PARTITIONS)

    core.forget(p)
    assert core.view.read("alice") == (None, None) and core.view.staged() == 0
    core.committed()  # a late commit call publishes nothing of the revoked partition
    assert core.view.read("alice") == (None, None)

    fresh = LedgerCore(CONFIG)
    fresh.restore(p, changelog, {})
    assert _taken(fresh, "alice") == 4 and fresh.view.staged() == 0


# -- leaderboards: the merge owner's boards --------------------------------


class _BoardCheckingOutput(MemoryOutput):
    """At every checkpoint handed over (stepped, not committed) and after
    each loop round: the merge owner's web boards equal the latest board
    per key on the committed leaderboards topic."""

    def __init__(self, log: MemoryLog):
        super().__init__(log)
        self.core: LedgerCore | None = None
        self.boards_seen = 0

    def commit(self, checkpoint) -> None:
        if self.core is not None:
            self.check(self.core)
        super().commit(checkpoint)

    def check(self, core: LedgerCore) -> None:
        if core.leaderboards is None or not core.leaderboards.merge.loaded():
            return
        topic: dict[str, dict] = {}
        for key, value in self.log.topic_records(LB_TOPICS.leaderboards):
            if value is None:
                topic.pop(key.decode(), None)
            else:
                topic[key.decode()] = json.loads(value)
        shown = core.view.read_boards(lambda boards: dict(boards.boards))
        assert shown == topic
        self.boards_seen = max(self.boards_seen, len(shown))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_merge_owner_shows_the_committed_boards_through_aborts_and_crashes(seed):
    published = scenario(seed, engineers=6, usage_per_engineer=8)  # (publish time, event)
    # windows close: final boards too
    published += [(e.event_time, e) for e in sentinels(START + timedelta(days=40), PARTITIONS)]
    log = MemoryLog(PARTITIONS)
    for when, e in published:
        log.append(LB_TOPICS.usage if e.type == "usage" else LB_TOPICS.grants, e.engineer_id.encode(),
                   encode_event(e), timestamp=when)
    output = _BoardCheckingOutput(log)
    rng = random.Random(seed)
    sources = [(t, p) for t in (LB_TOPICS.usage, LB_TOPICS.grants) for p in range(PARTITIONS)]

    def new_loop() -> CheckpointLoop:
        source = MemoryInput(log, (LB_TOPICS.usage, LB_TOPICS.grants, LB_TOPICS.leaderboard_candidates), rng, T0)
        source.assign(sources + [(LB_TOPICS.leaderboard_candidates, 0)])
        return CheckpointLoop(lambda: LedgerCore(LB_CONFIG), source, output, idle_s=1e9, batch_events_max=7,
                              clock=Clock())

    loop = new_loop()
    for i in range(3_000):
        output.fail_next = i % 17 == 5
        output.crash_next = i % 23 == 11
        output.core = loop.core
        try:
            loop.run_once()
        except Crash:
            loop = new_loop()  # a new process: merge state and boards from the changelog
        output.core = loop.core
        output.check(loop.core)
        inputs = sources + [(LB_TOPICS.leaderboard_candidates, 0)]
        if i > 50 and all(log.offsets.get(tp, 0) == len(log.records.get(tp, [])) for tp in inputs):
            break
    else:
        raise AssertionError("the loop did not drain its inputs")
    assert output.boards_seen > 0, "the scenario never published a board"
