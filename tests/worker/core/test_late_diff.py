"""`compstream diff`'s expectation for engineers with late events: the book as
the stream applied them (domain/as_streamed.py, decisions read back from the
history topic) equals the live balance, for any interleaving, batch cut and
crash, where the sorted replay does not (a late usage arriving after its
grant's expiry was final draws on nothing live, on the grant in the sorted
replay)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compstream.codec import decode_event, encode_event
from compstream.config import BOOK_BYTES_MAX
from compstream.domain.as_streamed import LateDecisionError, fold_as_streamed
from compstream.domain.events import EngineerOffboarded, GrantIssued, GrantRevoked, Usage
from compstream.domain.replay import ReplayResult, collect
from compstream.history.verify import verify_store
from compstream.ops.diff import LATE, compare, refused_in
from compstream.replay.kafka_source import SourceError
from compstream.replay.late_decisions import balance_as_streamed, collect_decisions, collect_late
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore, history_topic
from compstream.worker.core.loop import CheckpointLoop
from compstream.worker.core.memory import Crash, MemoryInput, MemoryLog, MemoryOutput
from worker.core.scenario import LATENESS_S, START, Clock
from worker.core.test_late_audit import history_store
from worker.core.test_protocol import PARTITIONS, TOPICS, TS, ViewCheckingOutput, _drained, _loop, balances
from worker.core.test_waves import WAVE_RUNS
from worker.core.test_waves import run as run_waves


def exports_a_day_apart(seed: int, engineers: int, per_day_max: int = 4):
    """[(publish time, event)] in publish order: grants (some expiring within
    days, some revoked) published ahead, OpenAI usage published within the
    hour, Anthropic usage as a daily export published 1 to 40 hours after its
    day ends (with a 6 h lateness, often late), some exports republished, and
    some offboardings reported up to two days late. Up to `per_day_max`
    OpenAI events a day per engineer (and 3/4 of that in exports)."""
    rng = random.Random(seed)
    out = []
    for n in range(engineers):
        eng = f"eng-{seed % 1000}-{n}"
        for g in range(rng.randint(1, 3)):
            effective = START + timedelta(hours=rng.randint(0, 24 * 3))
            expires = effective + timedelta(hours=rng.randint(6, 24 * 5))
            gid = f"{eng}-g{g}"
            out.append((effective - timedelta(hours=rng.randint(0, 72)),
                        GrantIssued(f"gi-{gid}", eng, gid, rng.randint(5, 60) * 10**8, effective, expires,
                                    "allowance")))
            if rng.random() < 0.3:
                when = effective + timedelta(hours=rng.randint(1, 48))
                out.append((when + timedelta(hours=rng.randint(0, 30)), GrantRevoked(f"rv-{gid}", eng, gid, when)))
        for day in range(7):
            day_start = START + timedelta(days=day)
            for u in range(rng.randint(0, per_day_max)):
                t = day_start + timedelta(minutes=rng.randint(0, 24 * 60 - 1))
                out.append((t + timedelta(minutes=rng.randint(0, 60)),
                            Usage(f"oa-{eng}-{day}-{u}", eng, "openai", "gpt-4o", t, 100, 10, 0, 0,
                                  rng.randint(1, 9) * 10**8)))
            published = day_start + timedelta(days=1, hours=rng.randint(1, 40))
            for u in range(rng.randint(0, per_day_max * 3 // 4)):
                export = Usage(f"an-{eng}-{day}-{u}", eng, "anthropic", "claude", day_start, 100, 10, 0, 0,
                               rng.randint(1, 9) * 10**8)
                out.append((published, export))
                if rng.random() < 0.2:  # the export fetched again the next day
                    out.append((published + timedelta(days=1), export))
        if rng.random() < 0.15:  # offboarded, HR telling us up to two days late
            when = START + timedelta(days=rng.randint(2, 6), hours=rng.randint(0, 23))
            out.append((when + timedelta(hours=rng.randint(0, 48)), EngineerOffboarded(f"off-{eng}", eng, when)))
    out.sort(key=lambda pair: pair[0])
    return out


def _run(published, chunk: int, events_max: int, faults: dict[int, str], seed: int,
         book_bytes_max: int = BOOK_BYTES_MAX) -> MemoryLog:
    log = MemoryLog(PARTITIONS)
    rng = random.Random(seed)
    output = ViewCheckingOutput(log, {e.engineer_id for _, e in published})
    todo = [e for _, e in published]
    loop = _loop(log, output, rng, events_max, book_bytes_max=book_bytes_max)
    for i in range(20_000):
        for event in todo[:chunk]:
            log.append(TOPICS.usage if event.type == "usage" else TOPICS.grants, event.engineer_id.encode(),
                       encode_event(event))
        todo = todo[chunk:]
        output.crash_next = faults.get(i) == "crash"
        output.fail_next = faults.get(i) == "abort"
        try:
            loop.run_once()
        except Crash:
            loop = _loop(log, output, rng, events_max, book_bytes_max=book_bytes_max)
        if not todo and _drained(log, loop):
            return log
    raise AssertionError("the loop did not drain the source topics")


def _views(log: MemoryLog):
    live = balances(log)
    events = [decode_event(v) for t in (TOPICS.usage, TOPICS.grants) for _, v in log.topic_records(t)]
    groups = collect(events, ReplayResult(balances={}))
    late = collect_late((f"history@{n}", v) for n, (_, v) in enumerate(log.topic_records(history_topic(TOPICS))))
    return live, groups, late


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), chunk=st.integers(1, 40), events_max=st.integers(1, 60),
       faults=st.dictionaries(st.integers(0, 80), st.sampled_from(["crash", "abort"]), max_size=4))
def test_live_balances_equal_the_book_as_streamed(seed, chunk, events_max, faults):
    log = _run(exports_a_day_apart(seed, engineers=4), chunk, events_max, faults, seed)
    live, groups, late = _views(log)
    assert late, "no late event: the scenario would test nothing"
    assert compare(live, groups, late=late) == []


def test_the_sorted_replay_alone_disagrees_where_late_usage_crossed_an_expiry():
    # Found by trying (a day-old export after a grant's expiry was final):
    # diff used to report this correct worker as wrong.
    log = _run(exports_a_day_apart(11, engineers=6), chunk=400, events_max=60, faults={}, seed=11)
    live, groups, late = _views(log)
    assert compare(live, groups, late=late) == []
    sorted_only = compare(live, groups)
    assert sorted_only, "the scenario must hold a late usage that changes a balance"
    assert {d.engineer_id for d in sorted_only} <= set(late)


def test_a_wrong_live_balance_of_an_engineer_with_late_events_is_still_a_difference():
    log = _run(exports_a_day_apart(11, engineers=6), chunk=400, events_max=60, faults={}, seed=11)
    live, groups, late = _views(log)
    engineer = sorted(late)[0]
    live[engineer] = {**live[engineer], "overdraft_nanos": live[engineer]["overdraft_nanos"] + 1}
    diffs = compare(live, groups, late=late)
    assert [(d.engineer_id, d.field) for d in diffs] == [(engineer, "overdraft_nanos")]


def test_a_decision_the_events_contradict_is_a_difference():
    log = _run(exports_a_day_apart(11, engineers=6), chunk=400, events_max=60, faults={}, seed=11)
    live, groups, late = _views(log)
    engineer = sorted(late)[0]
    event_id, _ = late[engineer][0]
    event = groups[engineer][event_id]
    forged = {**late, engineer: [(event_id, event.event_time)] + late[engineer][1:]}  # not older than it
    diffs = compare(live, groups, late=forged)
    assert [(d.engineer_id, d.field) for d in diffs] == [(engineer, LATE)]


def test_fold_as_streamed_refuses_watermarks_that_go_back():
    day = START
    grant = GrantIssued("g", "ada", "G", 10**9, day, day + timedelta(hours=2), "allowance")
    u1 = Usage("u1", "ada", "openai", "m", day + timedelta(hours=1), 1, 1, 0, 0, 10**8)
    u2 = Usage("u2", "ada", "openai", "m", day + timedelta(hours=1), 1, 1, 0, 0, 10**8)
    late = [("u1", day + timedelta(hours=5)), ("u2", day + timedelta(hours=3))]
    with pytest.raises(LateDecisionError, match="before the previous"):
        fold_as_streamed("ada", [grant, u1, u2], late)
    book = fold_as_streamed("ada", [grant, u1, u2], late[:1])
    book.advance(day + timedelta(hours=5))
    # u1 arrived after the grant expired (final): overdraft; u2 was on time.
    assert book.balance().overdraft_nanos == 10**8 and book.balance().expired_nanos == 9 * 10**8


def test_after_a_rebuild_the_last_decisions_count():
    # A rebuild reads the whole backlog again in large batches, judging each
    # event against the batch it lands in: most of what was late live is on
    # time now. Its history rows follow the first run's on the topic, and the
    # rebuilt books hold its decisions, not the first run's.
    log = _run(exports_a_day_apart(11, engineers=6), chunk=400, events_max=60, faults={}, seed=11)
    first = _views(log)[2]
    log.offsets.clear()  # the group deleted
    config = CoreConfig(TOPICS, "rebuilt", PARTITIONS, LATENESS_S, BOOK_BYTES_MAX)  # new changelogs
    source = MemoryInput(log, (TOPICS.usage, TOPICS.grants), random.Random(5), TS)
    source.assign([(t, p) for t in (TOPICS.usage, TOPICS.grants) for p in range(PARTITIONS)])
    loop = CheckpointLoop(lambda: LedgerCore(config), source, MemoryOutput(log), idle_s=1e9,
                          batch_events_max=10_000, clock=Clock())
    for _ in range(50):
        loop.run_once()
    assert _drained(log, loop)
    live, groups, late = _views(log)
    assert late != first, "the rebuild must decide differently, or this tests nothing"
    assert compare(live, groups, late=late) == []
    assert compare(live, groups, late=first) != []
    # Both views from the one topic: its last rows (the rebuilt books) and its
    # first rows (what the store keeps, so the statements).
    decisions = collect_decisions((f"history@{n}", v)
                                  for n, (_, v) in enumerate(log.topic_records(history_topic(TOPICS))))
    assert decisions.last == late and decisions.first == first
    rejudged = decisions.rejudged()
    assert rejudged and rejudged == {e for e in late.keys() | first.keys() if late.get(e) != first.get(e)}
    others = set(groups) - rejudged
    assert compare({e: live[e] for e in others}, {e: groups[e] for e in others}, late=first) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**WAVE_RUNS)
def test_faust_waves_crashes_and_the_last_decision_of_a_re_read(seed, backlog_pct, chunk, events_max, crash):
    # The Faust engine's checkpoint in waves: a crash after the history rows
    # but before the state makes the batch be read again (as it was cut,
    # core/cut.py); the books hold the decisions the history topic's last
    # row of each event records.
    published = exports_a_day_apart(seed, engineers=4)
    log = run_waves(published, len(published) * backlog_pct // 100, chunk, crash, seed, events_max)
    live, groups, late = _views(log)
    assert late, "no late event: the scenario would test nothing"
    assert compare(live, groups, late=late) == []


def test_the_replay_as_of_a_time_takes_a_later_decision_at_that_time():
    day = START
    grant = GrantIssued("g", "ada", "G", 10**9, day, day + timedelta(hours=2), "allowance")
    u1 = Usage("u1", "ada", "openai", "m", day + timedelta(hours=1), 1, 1, 0, 0, 10**8)
    late = [("u1", day + timedelta(hours=5))]  # arrived when 05:00 was final: after the expiry

    def at(hours):
        return balance_as_streamed("ada", [grant, u1], late, None if hours is None else day + timedelta(hours=hours))
    assert (at(None).overdraft_nanos, at(None).expired_nanos) == (10**8, 10**9)
    assert (at(3).overdraft_nanos, at(3).expired_nanos) == (10**8, 10**9)
    # Before the expiry nothing had expired yet: u1 draws on the grant.
    assert (at(1.5).overdraft_nanos, at(1.5).remaining_nanos) == (0, 9 * 10**8)
    assert (at(0.5).consumed_nanos, at(0.5).remaining_nanos) == (0, 10**9)  # u1 not yet


def test_an_unreadable_history_record_is_named():
    with pytest.raises(SourceError, match=r"history@7: an event row with engineer None"):
        collect_late([("history@7", b'{"v": 2, "events": {"columns": ["late"], "rows": [[true]]}}')])
    with pytest.raises(SourceError, match=r"history@8: not a history record"):
        collect_late([("history@8", b'{"v": 9}')])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), chunk=st.integers(1, 40), events_max=st.integers(1, 60),
       faults=st.dictionaries(st.integers(0, 80), st.sampled_from(["crash", "abort"]), max_size=4),
       limit=st.sampled_from([1024, 1536, 2048]), per_day_max=st.sampled_from([4, 16]))
def test_books_at_their_byte_limit_equal_diffs_replay(seed, chunk, events_max, faults, limit, per_day_max):
    """Books so small that usage is refused for room (book_full) and old
    days' ids are forgotten (too_old): what `diff` expects, the replay of the
    source records the worker did not refuse with its late decisions, is
    still each live balance."""
    log = _run(exports_a_day_apart(seed, engineers=4, per_day_max=per_day_max), chunk, events_max, faults, seed,
               book_bytes_max=limit)
    refused = refused_in(v for _, v in log.topic_records(TOPICS.dead_letters))
    events = [decode_event(v) for t in (TOPICS.usage, TOPICS.grants) for p in range(PARTITIONS)
              for o, (_, v) in enumerate(log.read(t, p)) if (t, p, o) not in refused]
    groups = collect(events, ReplayResult(balances={}))
    late = collect_late((f"history@{n}", v) for n, (_, v) in enumerate(log.topic_records(history_topic(TOPICS))))
    assert compare(balances(log), groups, late=late) == []
    report = verify_store(history_store(log, TOPICS), replay=True)  # and the auditor's replay agrees
    assert report.findings == [], report.findings[:3]
