"""A book is one changelog record with a byte limit. Usage that does not fit
its engineer's book is refused as a dead letter (stage book_full, raw bytes
kept) with one report per batch on the alerts topic; every stored book stays
within the limit, nothing is lost (applied + refused = sent) and nothing is
counted twice (a re-sent applied event is still a duplicate, not a refusal).
Room comes back as the watermark finalizes pending events and old days'
ids are forgotten."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compstream.codec import decode_record, encode_event
from compstream.domain.book import EngineerBook
from compstream.domain.book_codec import event_to_compact, fingerprint_text
from compstream.domain.events import GrantIssued, LateAt, Usage
from compstream.worker.processor import BOOK_FULL, LedgerProcessor, SourceMessage
from support.messages import record_time

T = datetime(2026, 11, 2, tzinfo=timezone.utc)
ENG = "eng-heavy"
LIMIT = 8_000
LATENESS_S = 3600


def _msg(e, offset: int) -> SourceMessage:
    topic = "usage" if e.type == "usage" else "grants"
    return SourceMessage(topic, 0, offset, e.engineer_id.encode(), encode_event(e), record_time(e, T))


def _usage(i: int, at: datetime) -> Usage:
    return Usage(f"u-{i:05d}", ENG, "anthropic", "claude-sonnet", at, 1_000, 200, 0, 0, 1_500)


class Run:
    """A processor over an in-memory table, one batch per call."""

    def __init__(self, limit: int = LIMIT):
        self.store: dict[str, bytes] = {}
        self.proc = LedgerProcessor(LATENESS_S, load_book=self.store.get, partitions=1, book_bytes_max=limit)
        self.offset = 0
        self.stored_sizes: list[int] = []

    def batch(self, events, sweep: bool = True):
        msgs = []
        for e in events:
            msgs.append(_msg(e, self.offset))
            self.offset += 1
        res = self.proc.process(msgs, keys=lambda: list(self.store), sweep=sweep, lagging=())
        for engineer, (data, _p) in res.books.items():
            self.store[engineer] = data
            self.stored_sizes.append(len(data))
        return msgs, res


def _dead(res) -> list[dict]:
    return [decode_record(v)[1] for _k, v in res.dead_letters]


def test_usage_beyond_the_limit_is_refused_whole_and_nothing_is_lost_or_doubled():
    run = Run()
    grant = GrantIssued("g-1", ENG, "G1", 10**12, T - timedelta(days=1), None, "monthly")
    run.batch([grant])
    # 600 usage events within 10 minutes: all pending (lateness 1 h), 16 B of
    # id + ~150 B pending each: far more than 8,000 bytes.
    usage = [_usage(i, T + timedelta(seconds=i)) for i in range(600)]
    sent, refused, applied_ids = 0, [], []
    for i in range(0, 600, 150):
        msgs, res = run.batch(usage[i:i + 150])
        sent += len(msgs)
        dead = _dead(res)
        refused += dead
        assert all(d["stage"] == BOOK_FULL and ENG in d["reason"] and "8000-byte limit" in d["reason"]
                   for d in dead)
        raw = {m.offset: m.value for m in msgs}
        assert all(bytes(d["raw"]) == raw[d["source_offset"]] for d in dead)  # kept for a redrive
        reports = [decode_record(v)[1] for _e, v in res.alerts]
        assert [r["kind"] for r in reports] == (["report:book_full"] if dead else [])
        applied_ids += [r.event_id for b in res.history for r in b.events]
        assert res.applied + len(dead) == len(msgs) and res.duplicates == 0
        assert not_applied_offsets(res) == {d["source_offset"] for d in dead}
    assert refused and applied_ids, "the limit must refuse some and take some"
    assert max(run.stored_sizes) <= LIMIT
    book = EngineerBook.from_bytes(run.store[ENG])
    assert book.taken == 1 + len(applied_ids) and len(applied_ids) + len(refused) == sent
    assert sorted(applied_ids) == sorted(set(applied_ids))
    balance = decode_record(res.balances[-1][1])[1] if res.balances else None
    assert balance is None or balance["events_applied"] == book.taken

    # Re-sent after a crash: what was applied is a duplicate, never a refusal
    # (else the dead letter would make the audit leave out a counted event).
    taken = {e.event_id for e in usage} & set(applied_ids)
    _msgs, again = run.batch([e for e in usage if e.event_id in taken])
    assert again.duplicates == len(taken) and again.dead_letters == [] and again.applied == 0


def not_applied_offsets(res) -> set[int]:
    return {offset for _t, _p, offset in res.not_applied}


def test_grants_are_taken_by_a_full_book():
    run = Run()
    run.batch([_usage(i, T + timedelta(seconds=i)) for i in range(200)])
    _m, res = run.batch([_usage(1000, T + timedelta(seconds=300))])
    assert [d["stage"] for d in _dead(res)] == [BOOK_FULL]
    grant = GrantIssued("g-late", ENG, "G2", 5 * 10**9, T, None, "monthly")
    _m, res = run.batch([grant])
    assert res.applied == 1 and res.dead_letters == []


def test_room_comes_back_when_the_watermark_moves_on():
    """Two hours later (lateness 1 h) the pending usage is final and leaves
    the pending list; the next day, the book forgets the ids of days before
    the watermark's day when it must: new usage fits again."""
    run = Run()
    run.batch([_usage(i, T + timedelta(seconds=i)) for i in range(300)])
    _m, full = run.batch([_usage(1000, T + timedelta(minutes=10))])
    assert [d["stage"] for d in _dead(full)] == [BOOK_FULL]
    next_day = T + timedelta(days=1, hours=2)
    later = [_usage(2000 + i, next_day + timedelta(seconds=i)) for i in range(5)]
    _m, res = run.batch(later)
    _m, res2 = run.batch([_usage(3000, next_day + timedelta(hours=2))])
    assert res.applied + res2.applied == 6 and res.dead_letters == res2.dead_letters == []
    assert max(run.stored_sizes) <= LIMIT


def test_the_limit_is_checked_against_its_bounds():
    # Not the broker's 1 MiB any more (a large book's records are cut: book_parts); memory.
    LedgerProcessor(0, load_book=dict().get, partitions=1, book_bytes_max=2 * 1024 * 1024)
    with pytest.raises(ValueError, match="book_bytes_max"):
        LedgerProcessor(0, load_book=dict().get, partitions=1, book_bytes_max=65 * 1024 * 1024)
    with pytest.raises(ValueError, match="book_bytes_max"):
        LedgerProcessor(0, load_book=dict().get, partitions=1, book_bytes_max=100)


_text = st.text(min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(event_id=_text, provider=_text, model=_text, at_us=st.integers(0, 4_102_444_800_000_000),
       tokens=st.lists(st.integers(0, 2**40), min_size=4, max_size=4),
       cost=st.none() | st.integers(0, 2**62), corrects=st.none() | _text)
def test_the_size_estimate_bounds_the_pending_form(event_id, provider, model, at_us, tokens, cost, corrects):
    """The processor's per-event growth (id record + canonical JSON length)
    bounds what a pending usage event adds to the packed book."""
    at = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=at_us)
    u = Usage(event_id, ENG, provider, model, at, *tokens, cost,
              None if cost is not None else "no price", None, corrects)
    assert len(orjson.dumps(event_to_compact(u))) + 1 <= len(fingerprint_text(u))


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(2_000, 12_000), batch=st.integers(1, 120),
       steps=st.lists(st.tuples(st.integers(0, 7_200), st.booleans(), st.booleans()), min_size=1, max_size=400))
def test_every_book_written_is_within_the_limit_and_every_event_is_accounted_for(limit, batch, steps):
    """Arbitrary arrivals (gaps of up to 2 h, some re-sent, some behind the
    stream by up to an hour), any batch size: no book written passes the
    limit, and each message is applied, a duplicate or refused, once."""
    run = Run(limit=1024)
    run.proc.book_bytes_max = limit
    events, at = [], T
    for i, (gap_s, resend, behind) in enumerate(steps):
        at += timedelta(seconds=gap_s)
        if resend and events:
            events.append(events[i // 2])
        else:
            events.append(_usage(i, at - timedelta(seconds=3_600 if behind else 0)))
    applied, dup, dead = 0, 0, []
    for i in range(0, len(events), batch):
        _m, res = run.batch(events[i:i + batch])
        applied, dup = applied + res.applied, dup + res.duplicates
        dead += [d["stage"] for d in _dead(res)]
    assert max(run.stored_sizes) <= limit
    assert set(dead) <= {BOOK_FULL} and applied + dup + len(dead) == len(events)
    assert EngineerBook.from_bytes(run.store[ENG]).taken == applied


def test_a_batch_takes_as_much_as_measuring_before_every_event_would():
    """Tracking the size through a batch (pending events in, finalized ones
    out) admits what measuring the book before each event admits: one-event
    batches are that oracle (each batch measures a book near its limit anew).
    Every third event is dated behind the watermark (late: only its id stays)."""
    start = T.replace(hour=0)
    events = [_usage(i, start + timedelta(seconds=60 * i - (5_400 if i % 3 == 2 else 0))) for i in range(600)]
    whole, single = Run(limit=12_000), Run(limit=12_000)
    whole.batch(events)
    for e in events:
        single.batch([e])
    taken = [EngineerBook.from_bytes(r.store[ENG]).taken for r in (whole, single)]
    assert 300 < taken[1] < 600, "the oracle must refuse some and take most"
    assert taken[0] >= taken[1] - 2, taken
    assert max(whole.stored_sizes + single.stored_sizes) <= 12_000



def test_a_rebuild_takes_every_recorded_decision_and_counts_it_against_the_limit():
    """A rebuild keeps the stream's late decisions waiting in the book at
    their watermark (events.LateAt): each takes its id and its pending form,
    although the event is older than the watermark (which alone would leave
    only its id). The stream applied those events, so the rebuild never
    refuses them; but the room counts them, so new usage that no longer fits
    is refused as ever."""
    from compstream.worker.recorded_late import RecordedDecisions

    under = T + timedelta(hours=2)  # the watermark below is exactly this: the decisions wait
    fresh = [_usage(i, under + timedelta(seconds=i)) for i in range(30)]
    decided = [_usage(100 + i, T + timedelta(seconds=i)) for i in range(60)]
    more = [_usage(200 + i, under + timedelta(seconds=100 + i)) for i in range(20)]
    recorded = RecordedDecisions({(ENG, u.event_id): (under, n) for n, u in enumerate(decided)}, {})
    run = Run()
    run.proc = LedgerProcessor(LATENESS_S, load_book=run.store.get, partitions=1, book_bytes_max=LIMIT,
                               recorded=recorded)
    clock = Usage("clock", "eng-other", "anthropic", "claude-sonnet", under + timedelta(seconds=LATENESS_S),
                  1, 1, 0, 0, 1)
    run.batch([clock])  # stream time: the watermark is `under`
    _msgs, res = run.batch(fresh + decided + more)
    refused = {d["source_offset"] - 1 for d in _dead(res)}  # offsets count from the clock's 0
    assert {d["stage"] for d in _dead(res)} <= {BOOK_FULL}
    assert not refused & set(range(30, 90)), "the stream applied these: never refused"
    assert set(range(90, 110)) <= refused, "the waiting decisions fill the book: no room for new usage"
    book = EngineerBook.from_bytes(run.store[ENG])
    waiting = [e for _k, e in book.pending if isinstance(e, LateAt)]
    assert len(waiting) == 60 and book.taken == res.applied and res.applied + len(refused) == 110


def test_a_rebuild_refuses_what_the_stream_refused_and_takes_what_it_took():
    """With the stream's refusals and how far it had judged (a rebuild's
    recorded-late.json): a record the stream refused is refused again with
    the stream's stage, room or not; below the stream's position nothing
    else is refused for room (the stream applied it: the statements count
    it, and `diff` leaves refused records out of its replay, so an extra
    refusal would go unseen); past it, usage is judged as ever."""
    from compstream.worker.recorded_late import RecordedDecisions

    usage = [_usage(i, T + timedelta(seconds=i)) for i in range(400)]

    def rebuild(recorded):
        run = Run()
        run.proc = LedgerProcessor(LATENESS_S, load_book=run.store.get, partitions=1, book_bytes_max=LIMIT,
                                   recorded=recorded)
        _msgs, res = run.batch(usage)
        return {d["source_offset"]: d["stage"] for d in _dead(res)}, res, run

    judged_again, _res, _run = rebuild(None)
    assert set(judged_again.values()) == {BOOK_FULL} and min(judged_again) < 350, "the book fills up"
    # The stream, say, read these in smaller batches and refused only offset 3 (too old there).
    recorded = RecordedDecisions({}, {}, refused={("usage", 0, 3): "too_old"}, through={("usage", 0): 350})
    refused, res, run = rebuild(recorded)
    assert refused[3] == "too_old" and "refused by the stream as too_old" in \
        next(d["reason"] for d in _dead(res) if d["source_offset"] == 3)
    assert not {o for o in refused if o != 3 and o < 350}, "below the stream's position: taken"
    assert set(range(350, 400)) <= set(refused) and {refused[o] for o in range(350, 400)} == {BOOK_FULL}
    assert res.applied == 349 and EngineerBook.from_bytes(run.store[ENG]).taken == 349
