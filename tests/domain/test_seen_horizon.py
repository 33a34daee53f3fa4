"""The book's dedupe memory is bounded: usage ids older than SEEN_USAGE_DAYS
behind the watermark are forgotten, and usage that old which is not
remembered is refused (too_old), never counted a second time. HR ids are
kept for good; version 1 books still read."""

from __future__ import annotations

import json
import struct
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from ledger_support import PROPS, at, grant, usage

from compstream.domain.book import SEEN_USAGE_DAYS, EngineerBook
from compstream.domain.book_codec import KEEP_DAY, MAGIC, STATE_FIELDS, SeenIds, id_digest, to_us

DAY_H = 24
LATENESS_H = 6


class Stream:
    """Feeds one book with the worker's watermark rule: latest event time
    seen minus lateness."""

    def __init__(self, book: EngineerBook):
        self.book, self.now_h = book, 0.0

    def __call__(self, event):
        t = event.occurred_at if event.type == "usage" else event.effective_at
        self.now_h = max(self.now_h, (t - at(0)) / timedelta(hours=1))
        return self.book.ingest(event, at(self.now_h - LATENESS_H))


def _cost(book: EngineerBook) -> int:
    return book.balance().usage_cost_nanos


def test_book_size_stays_bounded_over_months():
    book = EngineerBook.empty("e1")
    _feed = Stream(book)
    _feed(grant("g", "A", 10**15, 0))
    per_day, days = 200, 120
    for d in range(days):
        for i in range(per_day):
            assert _feed(usage(f"u{d}-{i}", d * DAY_H + i * 0.1, 1_000)).status == "applied"
    assert book.taken == 1 + per_day * days
    # At most SEEN_USAGE_DAYS (+ the current and the boundary day) of usage ids, plus the grant.
    assert len(book.seen) <= (SEEN_USAGE_DAYS + 2) * per_day + 1
    assert len(book.seen) < book.taken / 3
    assert len(book.to_bytes()) < 16 * (SEEN_USAGE_DAYS + 2) * per_day + 4096
    assert _cost(book) == per_day * days * 1_000


def test_duplicate_inside_the_horizon_is_still_caught():
    book = EngineerBook.empty("e1")
    _feed = Stream(book)
    _feed(usage("old", 0, 50))
    for d in range(1, SEEN_USAGE_DAYS - 1):
        _feed(usage(f"u{d}", d * DAY_H, 1))
    res = _feed(usage("old", 0, 50))
    assert res.status == "duplicate"
    res = _feed(usage("old", 0, 51))
    assert res.status == "conflict"
    assert book.taken == SEEN_USAGE_DAYS - 1


def test_forgotten_usage_is_refused_not_counted_twice():
    book = EngineerBook.empty("e1")
    _feed = Stream(book)
    _feed(usage("old", 0, 50))
    _feed(usage("now", (SEEN_USAGE_DAYS + 3) * DAY_H, 7))
    assert book.seen.get(id_digest("old")) is None  # forgotten
    before = (book.taken, _cost(book))
    for again in (usage("old", 0, 50), usage("new-but-old", DAY_H, 9)):
        res = _feed(again)
        assert res.status == "too_old"
        assert [r.code for r in res.reports][:1] == ["too_old"]
        assert res.postings == []
    assert (book.taken, _cost(book)) == before == (2, 57)
    # Still too old after a round trip: the boundary is stored with the book.
    again = EngineerBook.from_bytes(book.to_bytes())
    assert again.seen_from_day == book.seen_from_day > 0
    assert again.ingest(usage("old", 0, 50)).status == "too_old"


def test_hr_ids_are_never_forgotten():
    book = EngineerBook.empty("e1")
    _feed = Stream(book)
    _feed(grant("g1", "A", 1_000, 0))
    _feed(usage("later", (3 * SEEN_USAGE_DAYS) * DAY_H, 5))
    assert _feed(grant("g1", "A", 1_000, 0)).status == "duplicate"


def test_round_trip_keeps_the_count_and_the_boundary():
    book = EngineerBook.empty("e1")
    _feed = Stream(book)
    for d in range(0, 3 * SEEN_USAGE_DAYS, 5):
        _feed(usage(f"u{d}", d * DAY_H, 3))
    data = book.to_bytes()
    again = EngineerBook.from_bytes(data)
    assert (again.taken, again.seen_from_day, bytes(again.seen.blob)) == (
        book.taken, book.seen_from_day, bytes(book.seen.blob))
    assert again.to_bytes() == data


def test_version_1_books_read_with_every_id_kept():
    book = EngineerBook.empty("e1")
    _feed = Stream(book)
    for i in range(5):
        _feed(usage(f"u{i}", i, 10))
    v3 = book.to_bytes()
    # Rebuild the same book as version 1 wrote it: a JSON object, 8-byte
    # fingerprints, no days, no "n"/"sd" in the state (fingerprint tails
    # made up: v1 stored 8).
    head = struct.Struct(">2sBI")
    _, _, length = head.unpack_from(v3)
    state = dict(zip(STATE_FIELDS, json.loads(v3[head.size:head.size + length]), strict=True))
    del state["n"], state["sd"]
    body = json.dumps(state, separators=(",", ":")).encode()
    seen = SeenIds(v3[head.size + length:])
    v1_records = b"".join(seen.blob[at:at + 14] + b"\xaa\xbb" for at in range(0, len(seen.blob), 16))
    v1 = head.pack(MAGIC, 1, len(body)) + body + v1_records
    old = EngineerBook.from_bytes(v1)
    assert old.taken == 5 and old.seen_from_day == 0
    assert old.ingest(usage("u3", 3, 10)).status == "duplicate"  # 6-byte prefix still matches
    assert old.ingest(usage("u3", 3, 11)).status == "conflict"
    # Their days are unknown: kept through any watermark.
    old.advance(at(10 * SEEN_USAGE_DAYS * DAY_H))
    assert len(old.seen) == 5 and old.to_bytes()[2] == 3


def _arrivals(plan, data) -> list:
    """Distinct usage (day, cost) in plan order, with re-sends of earlier ones
    inserted at random later points."""
    events = [usage(f"u{i}", day * DAY_H + i * 0.01, 1 + cost) for i, (day, cost) in enumerate(plan)]
    arrivals = list(events)
    for _ in range(data.draw(st.integers(0, len(events)))):
        pick = data.draw(st.sampled_from(events))
        arrivals.insert(data.draw(st.integers(arrivals.index(pick) + 1, len(arrivals))), pick)
    return arrivals


_plans = st.lists(st.tuples(st.integers(0, 90), st.integers(0, 3)), min_size=1, max_size=60)


@PROPS
@given(_plans, st.data())
def test_never_counted_twice_with_bounded_memory(plan, data):
    """Any arrival order of distinct usage (days 0-90) with re-sends of earlier
    ones at random later points: each id is applied at most once, the book's
    totals are exactly the applied events, and every event is either applied,
    a duplicate, or refused as too old."""
    book = EngineerBook.empty("e1")
    _feed = Stream(book)
    arrivals = _arrivals(plan, data)
    applied: dict[str, int] = {}
    for e in arrivals:
        res = _feed(e)
        assert res.status in ("applied", "duplicate", "too_old")
        if res.status == "applied":
            assert e.event_id not in applied
            applied[e.event_id] = e.cost_nanos
    assert book.taken == len(applied)
    assert _cost(book) == sum(applied.values())
    book.finalize_all()
    assert book.final_balance().usage_cost_nanos == sum(applied.values())
    assert len(book.seen) <= book.taken


def _day(t) -> int:
    return to_us(t) // 86_400_000_000


def test_a_book_over_its_byte_budget_forgets_its_oldest_days_first():
    book = EngineerBook.empty("e1")
    _feed = Stream(book)
    for d in range(20):
        for i in range(300):
            _feed(usage(f"u{d}-{i}", d * DAY_H + i * 0.07, 10))
    full = len(book.to_bytes())
    data = book.to_bytes(bytes_max=40_000)
    assert len(data) <= 40_000 < full
    assert _day(at(0)) < book.seen_from_day <= _day(book.watermark)
    _feed.book = EngineerBook.from_bytes(data)
    assert _feed(usage("u0-0", 0, 10)).status == "too_old"  # forgotten early: refused, not counted
    assert _feed(usage("u19-299", 19 * DAY_H + 299 * 0.07, 10)).status == "duplicate"
    assert _feed(usage("fresh", 19 * DAY_H + 23, 10)).status == "applied"  # on time: never refused
    assert _feed.book.taken == 20 * 300 + 1


def test_the_watermark_day_and_later_are_never_forgotten_for_size():
    book = EngineerBook.empty("e1")
    _feed = Stream(book)
    times = {f"u{i}": at(i * 0.07) for i in range(600)}  # 42 h: the watermark is on day 1
    for eid, t in times.items():
        _feed(usage(eid, (t - at(0)) / timedelta(hours=1), 10))
    data = book.to_bytes(bytes_max=100)  # impossible: the size says so, the caller decides
    assert len(data) > 100 and book.seen_from_day == _day(book.watermark) == _day(at(24))
    kept = {eid for eid in times if book.seen.get(id_digest(eid)) is not None}
    assert kept == {eid for eid, t in times.items() if t >= at(24)}


@PROPS
@given(_plans, st.data(), st.sampled_from([200, 400, 1_000, None]))
def test_size_budget_never_counts_twice_nor_refuses_on_time_usage(plan, data, bytes_max):
    """The worker's cycle (ingest, to_bytes with a budget, from_bytes) under
    re-sends: nothing counted twice, and only usage dated before the watermark
    it arrived under is ever refused."""
    stream = Stream(EngineerBook.empty("e1"))
    arrivals = _arrivals(plan, data)
    applied: dict[str, int] = {}
    for e in arrivals:
        watermark = stream.book.watermark
        res = stream(e)
        if res.status == "too_old":
            assert watermark is not None and e.occurred_at < watermark
        elif res.status == "applied":
            assert e.event_id not in applied
            applied[e.event_id] = e.cost_nanos
        else:
            assert res.status == "duplicate"
        stream.book = EngineerBook.from_bytes(stream.book.to_bytes(bytes_max))
    assert stream.book.taken == len(applied)
    assert _cost(stream.book) == sum(applied.values())


@PROPS
@given(st.lists(st.tuples(st.binary(min_size=8, max_size=8), st.integers(0, 40)), unique_by=lambda r: r[0],
                max_size=80), st.integers(0, 45))
def test_forget_before_keeps_exactly_the_later_days_in_order(records, day_min):
    seen = SeenIds()
    for idd, day in records:
        seen.add(idd, idd[:6], day if day < 40 else KEEP_DAY)
    seen.add(b"\xff" * 8, b"\x00" * 6)  # an HR id: kept whatever the day
    before = bytes(seen.blob)
    dropped = seen.forget_before(day_min)
    kept = [before[at:at + 16] for at in range(0, len(before), 16)
            if int.from_bytes(before[at + 14:at + 16], "big") >= day_min]
    assert bytes(seen.blob) == b"".join(kept) and dropped == len(before) // 16 - len(kept)
    assert seen.get(b"\xff" * 8) == b"\x00" * 6
    assert seen.usage_day_counts() == {d: sum(1 for _, x in records if x == d)
                                       for d in {x for _, x in records if day_min <= x < 40}}
