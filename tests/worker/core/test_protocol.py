"""The checkpoint protocol without a broker: any fetch interleaving of the
two source topics, any batch cut, events arriving while the worker runs,
aborted commits and crashes at any batch -> the balances on the balance
topic and the history rows equal the offline replay, and every event is in
the history exactly once."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compstream.codec import decode_record, encode_event
from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.domain import book as book_module
from compstream.domain.events import LEDGER_EVENT_TYPES
from compstream.domain.replay import replay, replay_detailed
from compstream.history.wire import decode_batch
from compstream.worker import book_parts
from compstream.worker.book_changelog import HEAD_MAGIC, BookChangelog, is_segment_key
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore, history_topic
from compstream.worker.core.loop import CheckpointLoop
from compstream.worker.core.memory import Crash, DeferredCommits, MemoryInput, MemoryLog, MemoryOutput
from compstream.worker.messages import partition_of
from compstream.worker.positions import is_position_key
from support.checks import sentinels
from worker.core.scenario import LATENESS_S, START, Clock, scenario

PARTITIONS = 2
TOPICS = Topics.with_prefix("t")
TS = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _loop(log: MemoryLog, output: MemoryOutput, rng: random.Random, events_max: int,
          pipelined: bool = False, book_bytes_max: int = BOOK_BYTES_MAX) -> CheckpointLoop:
    """`pipelined`: each commit stays in flight through the next batch's
    fill and step (the transactional engine's committer thread)."""
    config = CoreConfig(TOPICS, "w", PARTITIONS, LATENESS_S, book_bytes_max)
    source = MemoryInput(log, (TOPICS.usage, TOPICS.grants), rng, TS)
    source.assign([(t, p) for t in (TOPICS.usage, TOPICS.grants) for p in range(PARTITIONS)])
    return CheckpointLoop(lambda: LedgerCore(config), source, output, idle_s=1e9,
                          batch_events_max=events_max, clock=Clock(),
                          committer=DeferredCommits() if pipelined else None)


def _publish(log: MemoryLog, event) -> None:
    topic = TOPICS.usage if event.type == "usage" else TOPICS.grants
    log.append(topic, event.engineer_id.encode(), encode_event(event))


def _drained(log: MemoryLog, loop: CheckpointLoop) -> bool:
    for (topic, p), records in log.records.items():
        if topic in (TOPICS.usage, TOPICS.grants) and log.offsets.get((topic, p), 0) < len(records):
            return False
    return True


class ViewCheckingOutput(MemoryOutput):
    """Checks, as each checkpoint is handed over (stepped, not yet
    committed), that the web view still shows only what is committed."""

    def __init__(self, log: MemoryLog, engineers: set[str]):
        super().__init__(log)
        self.engineers = engineers
        self.core: LedgerCore | None = None
        self.checked = 0

    def commit(self, checkpoint) -> None:
        if self.core is not None:
            assert_view_is_committed(self.core, self.log, self.engineers)
            self.checked += 1
        super().commit(checkpoint)


def committed_books(core: LedgerCore, log: MemoryLog) -> dict[str, bytes]:
    """Each engineer's book as the committed changelog holds it (a head and
    its segments assembled; a listed segment missing raises)."""
    books: dict[str, bytes] = {}
    segments: dict[str, bytes] = {}
    for (topic, _), records in log.records.items():
        if topic == core.changelog:
            for raw, value in records:
                key = raw.decode()
                if is_position_key(key):
                    continue
                target = segments if is_segment_key(key) else books
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = value
    return BookChangelog(core.changelog).restore(books, segments)


def assert_view_is_committed(core: LedgerCore, log: MemoryLog, engineers: set[str]) -> None:
    """Every book the web view shows is the last one on the committed
    changelog, and it shows none the changelog does not hold."""
    committed = committed_books(core, log)
    for engineer in engineers:
        partition = partition_of(engineer, PARTITIONS)
        if partition not in core.owned:
            continue
        data, _ = core.view.read(engineer)
        assert data == committed.get(engineer), f"web view of {engineer} is not the committed book"


def run(published, backlog: int, chunk: int, faults: dict[int, str], seed: int, events_max: int,
        pipelined: bool = False):
    log = MemoryLog(PARTITIONS)
    rng = random.Random(seed)
    output = ViewCheckingOutput(log, {e.engineer_id for _, e in published})
    for _, event in published[:backlog]:
        _publish(log, event)
    todo = [e for _, e in published[backlog:]]
    loop = _loop(log, output, rng, events_max, pipelined)
    for i in range(5_000):
        for event in todo[:chunk]:
            _publish(log, event)
        todo = todo[chunk:]
        kind = faults.get(i)
        output.crash_next = kind == "crash"
        output.fail_next = kind == "abort"
        output.core = loop.core
        try:
            loop.run_once()
        except Crash:
            loop = _loop(log, output, rng, events_max, pipelined)  # a new process: state from the changelog
        output.core = loop.core
        assert_view_is_committed(loop.core, log, output.engineers)
        if not todo and _drained(log, loop):
            if output.committed and not output.checked:
                raise AssertionError("no checkpoint was checked while in flight")
            return log
    raise AssertionError("the loop did not drain the source topics")


def assert_balances_equal_replay(log: MemoryLog, events: list, ticks: list) -> None:
    """The last balance record of every engineer equals the offline replay of
    that engineer's events as of the record's own time."""
    got = balances(log)
    by_engineer: dict[str, list] = {}
    for e in events + ticks:
        by_engineer.setdefault(e.engineer_id, []).append(e)
    ledger_engineers = {e.engineer_id for e in events if e.type in LEDGER_EVENT_TYPES}
    assert ledger_engineers <= set(got), sorted(ledger_engineers - set(got))
    for engineer, record in got.items():
        want = replay(by_engineer[engineer], as_of=record["as_of"])[engineer].to_dict()
        assert {k: record[k] for k in want if k in record} == {k: v for k, v in want.items() if k in record}, engineer


def balances(log: MemoryLog) -> dict[str, dict]:
    latest = {}
    for _, value in log.topic_records(TOPICS.balances):
        _, record = decode_record(value)
        latest[record["engineer_id"]] = record
    return latest


def history(log: MemoryLog):
    rows = {"events": [], "postings": []}
    for _, value in log.topic_records(history_topic(TOPICS)):
        batch = decode_batch(value)
        rows["events"] += batch.events
        rows["postings"] += batch.postings
    return rows


RUNS = dict(seed=st.integers(0, 10**6), backlog_pct=st.integers(0, 100), chunk=st.integers(1, 40),
            events_max=st.integers(1, 60),
            faults=st.dictionaries(st.integers(0, 60), st.sampled_from(["crash", "abort"]), max_size=4),
            pipelined=st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**RUNS)
def test_any_interleaving_cut_and_crash_equals_the_replay(seed, backlog_pct, chunk, events_max, faults, pipelined):
    check_run(seed, backlog_pct, chunk, events_max, faults, pipelined=pipelined)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**RUNS)
def test_sealed_days_in_any_interleaving_cut_and_crash_equal_the_replay(seed, backlog_pct, chunk, events_max,
                                                                        faults, pipelined):
    """The same with every past day's ids sealed into segments of their own
    (worker/book_changelog.py): restores after crashes and aborts assemble
    heads and segments, republished duplicates are found in sealed days."""
    with patch.object(book_module, "SEAL_RECORDS_MIN", 1):
        # Ticks within the 30-day dedupe horizon: the last sweep seals every usage day.
        log = check_run(seed, backlog_pct, chunk, events_max, faults, ticks_after_days=10, pipelined=pipelined)
    heads = [v for (topic, _), records in log.records.items() if topic == "w-books-changelog"
             for _, v in records if v is not None and v[:2] == HEAD_MAGIC]
    assert heads, "no book was written as a head with segments"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**RUNS)
def test_books_in_parts_in_any_interleaving_cut_and_crash_equal_the_replay(seed, backlog_pct, chunk, events_max,
                                                                          faults, pipelined):
    """The same with every book written as a head and parts (pending events
    by hour, ids by bucket and sealed day: worker/book_parts.py), parts cut
    small: restores after crashes and aborts assemble them, final hours
    leave the manifests."""
    with patch.object(book_module, "SEAL_RECORDS_MIN", 1), \
            patch.object(book_parts, "PARTS_BYTES_MIN", 0), \
            patch.object(book_parts, "SPLIT_BYTES_MIN", 0), \
            patch.object(book_parts, "PART_BYTES_MAX", 200):
        # Usage minutes apart: hours hold several events, the watermark falls inside them.
        log = check_run(seed, backlog_pct, chunk, events_max, faults, ticks_after_days=10,
                        usage_per_engineer=20, usage_gap_minutes_max=40, pipelined=pipelined)
    heads = [v for (topic, _), records in log.records.items() if topic == "w-books-changelog"
             for _, v in records if v is not None and v[:3] == HEAD_MAGIC + bytes([book_parts.HEAD_VERSION])]
    assert heads, "no book was written as a head with parts"


def check_run(seed, backlog_pct, chunk, events_max, faults, ticks_after_days: int = 60,
              usage_per_engineer: int = 6, usage_gap_minutes_max: int = 24 * 60, pipelined: bool = False) -> MemoryLog:
    published = scenario(seed, engineers=4, usage_per_engineer=usage_per_engineer,
                         usage_gap_minutes_max=usage_gap_minutes_max)
    ticks = sentinels(START + timedelta(days=ticks_after_days), PARTITIONS)
    events = [e for _, e in published]
    published = published + [(None, t) for t in ticks]
    log = run(published, len(published) * backlog_pct // 100, chunk, faults, seed, events_max, pipelined)

    assert_balances_equal_replay(log, events, ticks)

    rows = history(log)
    ids = Counter(r.event_id for r in rows["events"])
    assert set(ids) == {e.event_id for e in events + ticks}
    assert max(ids.values()) == 1, ids.most_common(3)
    finalized = replay_detailed([e for e in events if e.type in LEDGER_EVENT_TYPES],
                                as_of=ticks[0].occurred_at - timedelta(seconds=LATENESS_S, microseconds=1))
    stored: dict[str, list] = {}
    for p in rows["postings"]:
        stored.setdefault(p.engineer_id, []).append(p)
    for engineer, want in finalized.postings.items():
        assert [p.hash for p in sorted(stored.get(engineer, []), key=lambda p: p.seq)] == [p.hash for p in want]
    return log
