"""Sealed days of the seen-id set (book_codec.SeenIds): a past day's ids
move to a run of their own so the changelog can keep them in records of
their own. Sealing must change nothing a book decides: lookups, duplicates,
conflicts, forgetting and the bytes round trip are the same as without it."""

from __future__ import annotations

import random
from datetime import timedelta
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compstream.domain import book as book_module
from compstream.domain.book import EngineerBook
from compstream.domain.book_codec import (
    KEEP_DAY,
    RECORD,
    SeenIds,
    day_of,
    join_sealed,
    record_days,
    records_of_days,
    split_sealed,
)
from compstream.domain.events import GrantIssued, Usage
from compstream.synth import START

ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 400), st.integers(100, 112)),
    st.tuples(st.just("keep"), st.integers(0, 400), st.just(KEEP_DAY)),
    st.tuples(st.just("seal"), st.integers(100, 114), st.integers(1, 4)),
    st.tuples(st.just("forget"), st.integers(98, 108), st.just(0)),
), max_size=120)


def _records(blob: bytes | bytearray) -> list[bytes]:
    return [bytes(blob[at:at + RECORD]) for at in range(0, len(blob), RECORD)]


@settings(max_examples=300, deadline=None)
@given(ops=ops)
def test_sealing_keeps_every_lookup_of_a_plain_set(ops):
    seen = SeenIds()
    want: dict[bytes, tuple[bytes, int]] = {}  # id -> (fingerprint, day)
    for op, a, b in ops:
        if op in ("add", "keep"):
            idd, fpd = a.to_bytes(8, "big"), (a * 7 % 256).to_bytes(6, "big")
            if seen.get(idd) is None:
                seen.add(idd, fpd, b)
                want[idd] = (fpd, b)
        elif op == "seal":
            seen.seal_before(a, b)
        else:
            seen.forget_before(a)
            want = {k: v for k, v in want.items() if v[1] >= a}
        assert len(seen) == len(want)
        for idd, (fpd, _) in want.items():
            assert seen.get(idd) == fpd
        for run in (seen.blob, seen.sealed):
            assert _records(run) == sorted(_records(run))
        assert set(record_days(seen.sealed)) == seen.sealed_days
        assert not set(record_days(seen.blob)) & seen.sealed_days
        assert KEEP_DAY not in seen.sealed_days
        copy = SeenIds(bytes(seen.blob), bytes(seen.sealed))
        assert (copy.blob, copy.sealed, copy.sealed_days) == (seen.blob, seen.sealed, seen.sealed_days)


def test_a_day_is_sealed_behind_the_stop_and_with_enough_ids():
    seen = SeenIds()
    for i in range(10):
        seen.add(i.to_bytes(8, "big"), b"f" * 6, 100 + i % 3)  # days 100, 101, 102: 4, 3, 3 ids
    assert seen.seal_before(102, 4) == {100}  # 101 has too few; 102 is not behind the stop
    assert seen.seal_before(102, 1) == set()  # the same stop again: nothing new (cheap)
    assert seen.seal_before(103, 1) == {101, 102}
    assert seen.take_changed_days() == {100, 101, 102} and seen.take_changed_days() == set()
    seen.add((99).to_bytes(8, "big"), b"g" * 6, 101)  # a late id of a sealed day
    assert seen.take_changed_days() == {101}
    assert records_of_days(seen.sealed, {101})[101].count(b"g" * 6) == 1
    assert seen.blob == b""


def _events(rng: random.Random, n: int):
    """A busy engineer's usage over ~5 days: out of order within the
    lateness, some late, duplicates and conflicts of every age."""
    out = [GrantIssued("g", "e", "g", 10**12, START, None, "allowance")]
    t = START
    for i in range(n):
        t += timedelta(minutes=rng.randint(1, 90))
        jitter = timedelta(minutes=rng.randint(0, 600)) if rng.random() < 0.2 else timedelta()
        out.append(Usage(f"u{i}", "e", "openai", "gpt-4o", t - jitter, 10, 1, 0, 0, rng.randint(1, 10**6)))
    for _ in range(n // 5):  # republished, some with another payload
        e = rng.choice(out[1:])
        cost = e.cost_nanos if rng.random() < 0.7 else e.cost_nanos + 1
        out.insert(rng.randint(out.index(e) + 1, len(out)), Usage(
            e.event_id, "e", "openai", "gpt-4o", e.occurred_at, 10, 1, 0, 0, cost))
    return out


def _run(events, seal_min: int, lateness: timedelta, round_trip: bool):
    with patch.object(book_module, "SEAL_RECORDS_MIN", seal_min):
        book, stream, outcomes = EngineerBook.empty("e"), START, []
        for e in events:
            if e.type == "usage":
                stream = max(stream, e.occurred_at)
            r = book.ingest(e, stream - lateness)
            outcomes.append((r.status, r.late, r.balance, [p.hash for p in r.postings]))
            if round_trip:
                data = book.to_bytes()
                book = EngineerBook.from_bytes(data)
                assert book.to_bytes() == data
        return book, outcomes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n=st.integers(20, 150), lateness_h=st.integers(1, 12))
def test_a_book_decides_the_same_with_sealed_days(seed, n, lateness_h):
    events = _events(random.Random(seed), n)
    lateness = timedelta(hours=lateness_h)
    plain, want = _run(events, 10**9, lateness, round_trip=False)
    sealed, got = _run(events, 2, lateness, round_trip=True)
    # Sealed: only days behind the watermark's day that hold enough ids (a
    # day that reached them through a late id waits for the next day change).
    sealable = {d for d, n in plain.seen.usage_day_counts().items() if n >= 2 and d < day_of(plain.watermark)}
    assert sealed.seen.sealed_days <= sealable
    assert got == want
    assert sealed.balance() == plain.balance()
    assert len(sealed.seen) == len(plain.seen)
    assert sorted(_records(sealed.seen.blob) + _records(sealed.seen.sealed)) == _records(plain.seen.blob)


def test_split_and_join_are_inverse_and_leave_plain_books_alone():
    with patch.object(book_module, "SEAL_RECORDS_MIN", 2):
        book, _ = _run(_events(random.Random(3), 120), 2, timedelta(hours=2), round_trip=False)
    assert book.seen.sealed_days
    data = book.to_bytes()
    head, sealed = split_sealed(data)
    assert sealed == bytes(book.seen.sealed) and len(head) < len(data)
    assert join_sealed(head, sealed) == data
    assert split_sealed(head) == (head, b"")
    assert EngineerBook.from_bytes(head).seen.sealed_days == set()  # a head alone is a valid version 3 book
    plain = EngineerBook.empty("p").to_bytes()
    assert split_sealed(plain) == (plain, b"") and join_sealed(plain, b"") == plain
