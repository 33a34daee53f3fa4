"""The web view's books (core/committed.py): a step stages them, the
engine's commit shows them, a restore shows what the changelog holds, and a
revoked partition's books and times leave the view."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from compstream.codec import encode_event
from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.domain.book import EngineerBook
from compstream.domain.events import Usage
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.messages import SourceMessage, partition_of

TOPICS = Topics.with_prefix("view")
T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
PARTITIONS = 2
CONFIG = CoreConfig(TOPICS, "w", PARTITIONS, 6 * 3600, BOOK_BYTES_MAX)


def _messages(engineer: str, start: int, n: int, offset: int) -> list[SourceMessage]:
    p = partition_of(engineer, PARTITIONS)
    return [SourceMessage(TOPICS.usage, p, offset + i, engineer.encode(),
                          encode_event(Usage(f"u-{engineer}-{start + i}", engineer, "openai", "gpt-4o",
                                             T0 + timedelta(minutes=start + i), 100, 10, 0, 0, 10**6)), T0)
            for i in range(n)]


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
