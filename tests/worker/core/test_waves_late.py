"""The Faust engine's waves with late events: a crash after some of a
batch's history rows are out but before its positions makes the batch be
read again. The re-read is that same batch (the cut recorded before any
output, core/cut.py), judged under the same watermarks: every re-sent row
equals the first (late verdict, `applied_watermark`, `applied_seq`), a
posting seq has one row, and `audit verify --replay` finds nothing on the
history, whichever copy a store keeps."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from compstream.codec import decode_event
from compstream.domain.replay import ReplayResult, collect
from compstream.history.verify import verify_store
from compstream.history.wire import decode_batch
from compstream.ops.diff import compare, refused_in
from compstream.replay.late_decisions import collect_late
from compstream.worker.core.checkpoint import history_topic
from worker.core.test_late_audit import history_store
from worker.core.test_late_diff import _views, exports_a_day_apart
from worker.core.test_protocol import PARTITIONS, TOPICS, balances
from worker.core.test_waves import WAVE_RUNS
from worker.core.test_waves import run as run_waves


def check(seed: int, backlog_pct: int, chunk: int, events_max: int, crash: dict[int, tuple[int, int]]) -> None:
    published = exports_a_day_apart(seed, engineers=4)
    log = run_waves(published, len(published) * backlog_pct // 100, chunk, crash, seed, events_max)
    live, groups, late = _views(log)
    assert late, "no late event: the scenario would test nothing"
    assert compare(live, groups, late=late) == []
    copies: dict[str, list] = {}
    postings: dict[tuple[str, int], set[str]] = {}
    for _, value in log.topic_records(history_topic(TOPICS)):
        batch = decode_batch(value)
        for row in batch.events:
            copies.setdefault(row.event_id, []).append(row)
        for p in batch.postings:
            postings.setdefault((p.engineer_id, p.seq), set()).add(p.hash)
    for event_id, rows in copies.items():
        assert all(r == rows[0] for r in rows), (event_id, rows)
    assert all(len(hashes) == 1 for hashes in postings.values()), "a posting seq with two different rows"
    report = verify_store(history_store(log, TOPICS), replay=True)
    assert report.findings == [], report.findings[:3]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**WAVE_RUNS)
# Found by this test before cuts were recorded: the outputs out, the state
# not (wave 2 crashes before its first record); the re-read judged otherwise.
@example(seed=0, backlog_pct=0, chunk=8, events_max=5, crash={2: (2, 0)})
@example(seed=0, backlog_pct=0, chunk=2, events_max=2, crash={3: (2, 0)})
def test_a_re_read_after_a_crash_between_waves_judges_as_the_first_attempt(seed, backlog_pct, chunk, events_max,
                                                                           crash):
    check(seed, backlog_pct, chunk, events_max, crash)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**WAVE_RUNS, limit=st.sampled_from([1024, 2048]), per_day_max=st.sampled_from([4, 16]))
# Found by this test: the crash left some books of the batch written; the
# re-read took into such a book (room made by the first attempt's advance)
# an event the first attempt had refused for room, whose dead letter was out
# (then after 1 record of the state wave; that wave now opens with the refusals).
@example(seed=7512, backlog_pct=0, chunk=5, events_max=3, crash={33: (2, 2)}, limit=1024, per_day_max=16)
# And: a book of the batch written before the crash had forgotten, for room,
# the day of three exports the first attempt had applied: the re-read refused
# them as too old, dead letters against rows already out.
@example(seed=1, backlog_pct=0, chunk=7, events_max=6, crash={10: (2, 2)}, limit=1024, per_day_max=16)
# And: the crash came in the positions wave, after one partition's grants
# position: its usage was read again from its start, not as a cut, against
# books past the batch, and took an event the first attempt refused for room.
@example(seed=46143, backlog_pct=0, chunk=22, events_max=12, crash={3: (3, 1)}, limit=1024, per_day_max=16)
# And: that re-read in two batches, a second crash after the first: its own
# refusals record had replaced the one that still held for the rest.
@example(seed=111680, backlog_pct=12, chunk=2, events_max=22, crash={2: (3, 1), 4: (0, 0)}, limit=1024,
         per_day_max=16)
# And: the re-read dead-lettered again what the first attempt refused for
# room, but skipped what that refusal did to the book (the room's measure
# advanced it): the next late event was posted after the postings that
# advance finalized, where the first attempt had posted it before them --
# one posting seq written twice with different hashes.
@example(seed=2369, backlog_pct=7, chunk=15, events_max=30, crash={17: (2, 1), 12: (0, 1)}, limit=1024,
         per_day_max=16)
def test_a_re_read_refuses_again_what_the_first_attempt_refused_for_room(seed, backlog_pct, chunk, events_max,
                                                                        crash, limit, per_day_max):
    """Books at a 1-2 KB limit: usage refused for room (book_full) and as too
    old. After a crash between waves, live balances still equal diff's
    replay of the records not refused, and the auditor's replay."""
    published = exports_a_day_apart(seed, engineers=4, per_day_max=per_day_max)
    log = run_waves(published, len(published) * backlog_pct // 100, chunk, crash, seed, events_max,
                    book_bytes_max=limit)
    refused = refused_in(v for _, v in log.topic_records(TOPICS.dead_letters))
    events = [decode_event(v) for t in (TOPICS.usage, TOPICS.grants) for p in range(PARTITIONS)
              for o, (_, v) in enumerate(log.read(t, p)) if (t, p, o) not in refused]
    late = collect_late((f"history@{n}", v) for n, (_, v) in enumerate(log.topic_records(history_topic(TOPICS))))
    assert compare(balances(log), collect(events, ReplayResult(balances={})), late=late) == []
    report = verify_store(history_store(log, TOPICS), replay=True)
    assert report.findings == [], report.findings[:3]
