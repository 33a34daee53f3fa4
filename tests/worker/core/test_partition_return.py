"""A partition that moves to another worker and comes back: the books are
restored from the changelog, and what the first worker remembered about them
(when each book next has something to finalize) must not survive the trip.
Another worker may have added an earlier pending event meanwhile; a sweep
that trusted the old due time would skip that book, and the watermark row it
writes would claim postings final that are not in history."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compstream.codec import encode_event
from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.domain.book import EngineerBook
from compstream.domain.events import GrantIssued, Usage
from compstream.worker import processor
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore, changelog_topic
from compstream.worker.messages import SourceMessage, partition_of
from worker.core.scenario import scenario

TOPICS = Topics.with_prefix("ret")
T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
LATENESS = timedelta(hours=6)
CONFIG = CoreConfig(TOPICS, "w", 1, int(LATENESS.total_seconds()), BOOK_BYTES_MAX)
CONFIG_TOPIC = changelog_topic("w")


class Log:
    """The source topics, the compacted changelog and the history records, in memory."""

    def __init__(self) -> None:
        self.next = {TOPICS.usage: 0, TOPICS.grants: 0}
        self.changelog: dict[bytes, bytes | None] = {}
        self.history: list[bytes] = []

    def message(self, event) -> SourceMessage:
        topic = TOPICS.usage if event.type == "usage" else TOPICS.grants
        offset = self.next[topic]
        self.next[topic] += 1
        return SourceMessage(topic, 0, offset, event.engineer_id.encode(), encode_event(event), event.event_time)

    def step(self, core: LedgerCore, *events) -> None:
        checkpoint = core.step([self.message(e) for e in events])
        for r in checkpoint.records:
            if r.topic == core.changelog:
                self.changelog[r.key] = r.value
            elif r.topic == core.history:
                self.history.append(r.value)
        core.committed()

    def restore(self, core: LedgerCore) -> None:
        core.restore(0, list(self.changelog.items()), {})


def _usage(event_id: str, engineer: str, at: datetime) -> Usage:
    return Usage(event_id, engineer, "openai", "gpt-4o", at, 100, 10, 0, 0, 10**6)


def partition_back(log: Log) -> LedgerCore:
    """A partition moves to another worker and back; meanwhile alice gets an
    earlier pending usage. Returns the first worker, after its last batch."""
    first, other = LedgerCore(CONFIG), LedgerCore(CONFIG)
    log.restore(first)
    grant = GrantIssued("g-1", "alice", "g1", 10**12, T0, None, "allowance")
    log.step(first, grant, _usage("u-late-due", "alice", T0 + timedelta(hours=10)))
    # alice's first pending usage is at 10:00: `first` would sweep her once the watermark passes it.
    first.forget(0)
    log.restore(other)
    # Meanwhile the other worker takes usage of 09:00 (within the lateness: pending, not late).
    log.step(other, _usage("u-early", "alice", T0 + timedelta(hours=9)))
    other.forget(0)
    log.restore(first)
    # Stream time 15:30: the watermark (09:30) passes alice's 09:00 usage but not her 10:00 one.
    log.step(first, _usage("u-bob", "bob", T0 + timedelta(hours=15, minutes=30)))
    return first


def test_a_book_changed_elsewhere_is_swept_by_its_new_due_time():
    first = partition_back(Log())
    book = EngineerBook.from_bytes(first.books["alice"])
    assert book.watermark == T0 + timedelta(hours=9, minutes=30)
    assert [e[1].event_id for e in book.pending] == ["u-late-due"]


PARTITIONS = 2
MOVES_CONFIG = CoreConfig(TOPICS, "w", PARTITIONS, int(LATENESS.total_seconds()), BOOK_BYTES_MAX)


def _messages(seed: int) -> list[SourceMessage]:
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for published, event in scenario(seed, engineers=6, usage_per_engineer=8, usage_gap_minutes_max=6 * 60):
        topic = TOPICS.usage if event.type == "usage" else TOPICS.grants
        p = partition_of(event.engineer_id, PARTITIONS)
        offset = offsets.get((topic, p), 0)
        offsets[(topic, p)] = offset + 1
        out.append(SourceMessage(topic, p, offset, event.engineer_id.encode(), encode_event(event), published))
    return out


def _nothing_due_before_the_swept_watermark(core: LedgerCore) -> None:
    """What a watermark row claims: every stored book of a swept partition
    has nothing left to finalize before that partition's swept watermark."""
    for engineer, data in core.books.items():
        p = partition_of(engineer, PARTITIONS)
        swept = core.processor.swept_watermark.get(p)
        if swept is None:
            continue
        left = EngineerBook.from_bytes(data).advance(swept)
        assert not left.postings, f"{engineer} on partition {p}: {len(left.postings)} postings before {swept}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), cuts=st.lists(st.integers(1, 12), min_size=1, max_size=40),
       moves=st.lists(st.booleans(), min_size=1, max_size=40))
def test_after_every_batch_no_stored_book_has_something_due_before_its_swept_watermark(seed, cuts, moves):
    """Partitions move between two workers at random batch boundaries; every
    message goes to its partition's owner of the moment."""
    _run_with_moves(seed, cuts, moves)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), cuts=st.lists(st.integers(1, 6), min_size=1, max_size=40),
       moves=st.lists(st.booleans(), min_size=1, max_size=40))
def test_sweeps_cut_short_by_their_row_bound_claim_nothing_and_catch_up(seed, cuts, moves):
    """A sweep stops at SWEEP_ROWS_MAX rows (here a few) and does not mark its
    partitions swept; the books it did not reach come up first next time."""
    with patch.object(processor, "SWEEP_ROWS_MAX", 12):
        sweeps = _run_with_moves(seed, cuts, moves)
    assert sweeps["complete"] > 0


def _run_with_moves(seed: int, cuts: list[int], moves: list[bool]) -> Counter:
    sweeps: Counter = Counter()
    changelog: dict[int, dict[bytes, bytes | None]] = {p: {} for p in range(PARTITIONS)}
    workers = [LedgerCore(MOVES_CONFIG), LedgerCore(MOVES_CONFIG)]
    owner = {p: p % 2 for p in range(PARTITIONS)}
    for p, w in owner.items():
        workers[w].restore(p, [], {})
    messages, i, n = _messages(seed), 0, 0
    while i < len(messages):
        size = cuts[n % len(cuts)]
        if moves[n % len(moves)]:  # the partition of the next message changes hands
            p = messages[i].partition
            old, new = workers[owner[p]], workers[1 - owner[p]]
            old.forget(p)
            new.restore(p, list(changelog[p].items()), {})
            owner[p] = 1 - owner[p]
        n += 1
        for w, core in enumerate(workers):
            batch = [m for m in messages[i:i + size] if owner[m.partition] == w]
            before = dict(core.processor.swept_watermark)
            checkpoint = core.step(batch)
            for r in checkpoint.records:
                if r.topic == core.changelog:
                    changelog[r.partition][r.key] = r.value
            core.committed()
            _nothing_due_before_the_swept_watermark(core)
            if core.processor.swept_watermark != before:
                sweeps["complete"] += 1
        i += size
    return sweeps


def test_a_restore_over_a_held_partition_takes_the_changelog_as_it_is():
    """A book held in sealed segments here, written as one record elsewhere:
    restored again, its old segment layout must not outlive it."""
    from compstream.domain import book as book_module
    from compstream.worker.book_changelog import BookChangelog

    with patch.object(book_module, "SEAL_RECORDS_MIN", 2):
        book, t = EngineerBook.empty("e"), T0
        for i in range(200):
            t += timedelta(minutes=30)
            book.ingest(_usage(f"u{i}", "e", t), t - LATENESS)
        seen = book.seen
        written = BookChangelog(CONFIG_TOPIC).records("e", book.to_bytes(), 0, frozenset(seen.sealed_days),
                                                      seen.take_changed_days())
        assert len(written) > 1  # a head and its segments
        core = LedgerCore(CONFIG)
        core.restore(0, [(r.key, r.value) for r in written], {})
        assert core.book_log.holds("e")
        plain = EngineerBook.empty("e")
        plain.ingest(_usage("u-new", "e", t), t - LATENESS)
        core.restore(0, [(b"e", plain.to_bytes())], {})
        assert not core.book_log.holds("e")
        assert core.books["e"] == plain.to_bytes()
