"""The core step's shortcuts agree with the code they stand in for.

domain/twin.py: objects built by a twin are the objects the frozen __init__
builds (type, equality, hash, frozenness, serialized bytes); the generated
EventRow builders equal the keyword-built rows; the fingerprint fast path
declines what orjson would write differently; `day_of` and the seen set's
one-search insert and C-loop day scan equal their plain definitions."""

from __future__ import annotations

import dataclasses
import heapq
import json
import random
import tracemalloc
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compstream.codec import encode_record
from compstream.domain import book as book_module
from compstream.domain import book_codec
from compstream.domain.balance import BALANCE_FIELDS, Balance, Posting
from compstream.domain.book import EngineerBook
from compstream.domain.book_codec import _DAY_OF_RECORD, SeenIds, day_of, event_to_compact, record_days, to_us
from compstream.domain.chain import canonical_posting_reference, chain_hash, ledger_posting_hash
from compstream.domain.events import (
    EVENT_CLASSES,
    LEDGER_EVENT_TYPES,
    GrantIssued,
    GrantRevoked,
    Usage,
    event_to_json,
    payload_fingerprint,
)
from compstream.domain.twin import fast_constructor, twin_class
from compstream.history.rows import EventRow, PostingRow, utc
from compstream.synth import generate
from compstream.worker import processor
from compstream.worker.core.ports import OutRecord, new_out_record

UTC = timezone.utc
PROPS = settings(max_examples=60, deadline=None)
_times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                      timezones=st.just(UTC) | st.just(timezone(timedelta(hours=-3))))
_text = st.text(max_size=6)
_ints = st.integers(-2**63, 2**63 - 1)


def _same_object(built, ref) -> None:
    assert type(built) is type(ref)
    assert built == ref and hash(built) == hash(ref)
    assert dataclasses.astuple(built) == dataclasses.astuple(ref)
    assert orjson.dumps(built, default=repr) == orjson.dumps(ref, default=repr)
    name = dataclasses.fields(built)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, name, getattr(built, name))


@PROPS
@given(st.tuples(_text, _ints, _text, st.none() | _text, _ints, _text, _times, _ints, _text, _text))
def test_posting_and_posting_row(values):
    _same_object(fast_constructor(Posting)(*values), Posting(*values))
    _same_object(fast_constructor(PostingRow)(*values), PostingRow(*values))
    _same_object(PostingRow.from_posting(Posting(*values)), PostingRow(*values[:6], utc(values[6]), *values[7:]))


@PROPS
@given(st.lists(_ints, min_size=len(BALANCE_FIELDS), max_size=len(BALANCE_FIELDS)))
def test_balance(values):
    _same_object(fast_constructor(Balance)(*values), Balance(*values))


@PROPS
@given(_text, st.none() | st.binary(max_size=4), st.none() | st.binary(max_size=4), st.none() | _ints)
def test_out_record(topic, key, value, partition):
    _same_object(new_out_record(topic, key, value, partition), OutRecord(topic, key, value, partition))


def test_fields_left_out_take_their_defaults():
    @dataclass(frozen=True, slots=True)
    class Row:
        a: int
        b: str = "x"
        c: int | None = None

    _same_object(fast_constructor(Row, ("a", "c"))(1, 2), Row(1, c=2))
    with pytest.raises(TypeError, match="no default"):
        fast_constructor(Row, ("b",))


def test_refuses_what_it_cannot_build_faithfully():
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError("a")

    @dataclass(frozen=True, slots=True)
    class Base:
        a: int

    @dataclass(frozen=True, slots=True)
    class MoreSlots(Base):
        b: int = 0

    for cls in (NoSlots, Checked, MoreSlots, int):
        with pytest.raises(TypeError):
            twin_class(cls)


def _reference_row(event, *, topic, partition, offset, ingest_time, late=False, payload=None,
                   schema_version=1, applied_watermark=None) -> EventRow:
    """EventRow.from_event as written before the generated builders."""
    skip = {"type", "event_id", "engineer_id", "effective_at", "occurred_at"}
    values = {("grant_kind" if f.name == "kind" else f.name): getattr(event, f.name)
              for f in dataclasses.fields(event) if f.name not in skip}
    return EventRow(
        type=event.type, event_id=event.event_id, engineer_id=event.engineer_id,
        event_time=utc(event.event_time), kafka_topic=topic, kafka_partition=partition, kafka_offset=offset,
        ingest_time=utc(ingest_time), payload=payload if payload is not None else event_to_json(event),
        schema_version=schema_version, late=late,
        applied_watermark=utc(applied_watermark) if applied_watermark is not None else None, **values)


def test_event_rows_equal_the_keyword_built_rows():
    events = list(generate(20, 400))
    berlin = timezone(timedelta(hours=1))
    events.append(Usage("u-x", "eng-x", "p", "m", datetime(2026, 1, 1, 5, tzinfo=berlin), 1, 2, 3, 4, 5))
    seen_types = set()
    for i, event in enumerate(events):
        seen_types.add(type(event))
        kw = dict(topic="t", partition=i % 3, offset=i,
                  ingest_time=datetime(2026, 1, 1, tzinfo=berlin if i % 2 else UTC), late=bool(i % 5 == 0),
                  payload="{}" if i % 4 else None,
                  applied_watermark=[None, datetime(2025, 12, 31, tzinfo=UTC),
                                     datetime(2025, 12, 31, tzinfo=berlin)][i % 3])
        _same_object(EventRow.from_event(event, **kw), _reference_row(event, **kw))
    assert seen_types >= {Usage, GrantIssued}
    assert len(EVENT_CLASSES) >= 4


@PROPS
@given(_times, st.sampled_from([0, 1, 999_999]))
def test_fingerprint_fast_path_declines_what_orjson_writes_differently(at, micro):
    at = at.replace(microsecond=micro)
    u = Usage("u-1", "eng-1", "p", "m", at, 1, 2, 3, 4, 5)
    g = GrantIssued("g-1", "eng-1", "gr", 10, at, at + timedelta(days=1), "monthly")
    for event in (u, g):
        assert book_codec.fingerprint_text(event) == payload_fingerprint(event)
        fast = book_codec._FP_FAST[type(event)](event)
        taken = at.tzinfo is UTC and micro != 0 and at.year >= 1000
        assert (fast is not None) == taken


@PROPS
@given(_times)
def test_day_of_is_whole_days_since_the_epoch(at):
    assert day_of(at) == to_us(at) // 86_400_000_000


@PROPS
@given(st.lists(st.tuples(st.binary(min_size=8, max_size=8), st.binary(min_size=6, max_size=6),
                          st.integers(0, 0xFFFF)), max_size=40),
       st.binary(min_size=8, max_size=8), st.integers(0, 0xFFFF))
def test_seen_ids_lookup_insert_and_day_scan(records, idd, day_min):
    plain, fast = SeenIds(), SeenIds()
    for rid, fpd, day in records:
        at, prev = fast.lookup(rid)
        assert prev == plain.get(rid)
        if prev is None:
            plain.add(rid, fpd, day)
            fast.insert(at, rid, fpd, day)
    assert fast.blob == plain.blob
    assert fast.lookup(idd)[1] == plain.get(idd)
    assert list(record_days(fast.blob)) == [day for (day,) in _DAY_OF_RECORD.iter_unpack(plain.blob)]
    kept = b"".join(plain.blob[i:i + 16] for i in range(0, len(plain.blob), 16)
                    if int.from_bytes(plain.blob[i + 14:i + 16], "big") >= day_min)
    assert fast.forget_before(day_min) == (len(plain.blob) - len(kept)) // 16
    assert bytes(fast.blob) == kept


@PROPS
@given(_text, st.integers(1, 2**40), st.sampled_from(["consume", "issue", "é\"x"]), st.none() | _text,
       st.integers(-2**63, 2**63), _text, _times, _ints)
def test_ledger_posting_hash_is_the_chain_hash_of_the_canonical_text(engineer, seq, kind, gid, amount, cause, at,
                                                                     avail):
    fields = dict(engineer_id=engineer, seq=seq, kind=kind, grant_id=gid, amount_nanos=amount,
                  cause_event_id=cause, event_time=at, available_after_nanos=avail)
    expected = chain_hash("ab" * 32, canonical_posting_reference(**fields))
    assert ledger_posting_hash("ab" * 32, *fields.values()) == expected


@pytest.mark.parametrize("at", [datetime(2026, 1, 1, tzinfo=UTC), datetime(999, 1, 1, 0, 0, 0, 7, tzinfo=UTC),
                                datetime(2026, 1, 1, 0, 0, 0, 7, tzinfo=timezone(timedelta(hours=2)))])
def test_ledger_posting_hash_times_orjson_leaves_to_format_time(at):
    """A zero fraction, a year before 1000, another zone: not the orjson case."""
    fields = dict(engineer_id="e", seq=3, kind="consume", grant_id=None, amount_nanos=5,
                  cause_event_id="c", event_time=at, available_after_nanos=-5)
    expected = chain_hash("ab" * 32, canonical_posting_reference(**fields))
    assert ledger_posting_hash("ab" * 32, *fields.values()) == expected


def test_ledger_posting_hash_keeps_the_int_checks():
    at = datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=UTC)
    with pytest.raises(TypeError, match="amount_nanos"):
        ledger_posting_hash("0" * 64, "e", 1, "consume", None, 1.5, "c", at, 0)
    with pytest.raises(TypeError, match="seq"):
        ledger_posting_hash("0" * 64, "e", True, "consume", None, 1, "c", at, 0)


# --- the per-book outputs of a batch (LedgerProcessor._result) -------------

def _reference_pack(book: EngineerBook) -> bytes:
    """EngineerBook._pack as written before its empty-part shortcuts."""
    led = book.ledger
    state = {
        "e": book.engineer_id, "w": None if book.watermark is None else to_us(book.watermark),
        "th": list(led.thresholds), "f": led.fired, "o": int(led.od_flag), "s": led.seq, "h": led.head,
        "c": [getattr(led, name) for name in book_module._COUNTERS],
        "l": [[lot.grant_id, lot.amount, lot.remaining, lot.consumed, to_us(lot.effective_at),
               None if lot.expires_at is None else to_us(lot.expires_at)] for lot in led.lots],
        "x": sorted(led.closed), "p": [event_to_compact(e) for _, e in book.pending],
        "n": book.taken, "sd": book.seen_from_day,
    }
    return book_codec.pack(state, book.seen)


def _reference_settle(book: EngineerBook) -> tuple:
    """What EngineerBook.settle's general case sets, for any number of lots."""
    lots = book.ledger.lots
    expiries = [(lot.expires_at, lot.grant_id) for lot in lots if lot.expires_at is not None]
    heapq.heapify(expiries)
    return (expiries, list({lot.grant_id: lot for lot in lots}.items()),
            sum(lot.remaining for lot in lots), sum(lot.amount for lot in lots))


def _reference_balance(engineer: str, book: EngineerBook, watermark: datetime, until: datetime | None) -> bytes:
    """processor.encode_balance as written before its generated record."""
    record = dict(zip(processor.BALANCE_FIELDS,
                      [getattr(book.balance(until), name) for name in processor.BALANCE_FIELDS], strict=True))
    cause = book.last_included(until)
    record.update(engineer_id=engineer, cause_event_id=cause.event_id if cause is not None else "",
                  as_of=book.as_of(until), watermark=watermark if watermark > processor.EPOCH else None,
                  events_applied=book.taken)
    return encode_record("BalanceUpdate", record)


def _fed_books(events, rng):
    """Each event into its engineer's book, under a watermark 0-47 h behind
    the newest event so far, outputs drained; yields (book, newest time)."""
    books: dict[str, EngineerBook] = {}
    top = None
    for e in events:
        top = e.event_time if top is None else max(top, e.event_time)
        book = books.setdefault(e.engineer_id, EngineerBook.empty(e.engineer_id))
        book.ingest(e, top - timedelta(hours=rng.randrange(0, 48)))
        book.ledger.drain()
        yield book, top


@pytest.mark.parametrize("seed", range(4))
def test_book_outputs_equal_their_reference(seed):
    """Books at every stage (no lot, one, several; closed grants; pending
    events; scheduled HR events ahead of `until`): the packed bytes, the
    balance record and settle's single-lot shortcut equal the plain code."""
    rng = random.Random(seed)
    events = [e for e in generate(3, 300, seed=seed) if e.type in LEDGER_EVENT_TYPES]
    grants = [e for e in events if e.type == "grant_issued"]
    events += [GrantRevoked(f"rev-{g.event_id}", g.engineer_id, g.grant_id, g.effective_at + timedelta(hours=1))
               for g in grants[:4]]
    events += [GrantIssued(f"more-{g.event_id}", g.engineer_id, f"more-{g.grant_id}", g.amount_nanos, g.effective_at,
                           None if i % 2 else g.effective_at + timedelta(days=90), g.kind)
               for i, g in enumerate(grants)]  # books with several open lots
    rng.shuffle(events)
    lots_seen = set()
    for book, top in _fed_books(events, rng):
        if rng.random() < 0.3:
            until = rng.choice([None, top, top - timedelta(hours=rng.randrange(0, 72))])
            watermark = rng.choice([processor.EPOCH, top - timedelta(hours=6)])
            assert processor.encode_balance(book.engineer_id, book, watermark, until) == _reference_balance(
                book.engineer_id, book, watermark, until)
            assert book.to_bytes() == _reference_pack(book)
            expected = _reference_settle(book)
            assert book.settle()
            led = book.ledger
            assert (led.expiries, list(led.open.items()), led.remaining, led.open_amount) == expected
            lots_seen.add(min(len(led.lots), 2))
    assert lots_seen == {0, 1, 2}


def _pack_v2(book: EngineerBook) -> bytes:
    """The book as version 2 wrote it: the state as a JSON object."""
    state, seen = book_codec.unpack(book.to_bytes())
    body = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return book_codec._HEADER.pack(book_codec.MAGIC, 2, len(body)) + body + bytes(seen.blob)


@pytest.mark.parametrize("seed", range(3))
def test_version_2_books_read_as_their_version_3_twin(seed):
    """Changelogs written before version 3 hold version 2 books: each reads
    back to the same book (its bytes are the version 3 encoding of it, its
    balance the same), and version 3 is the smaller."""
    rng = random.Random(seed)
    events = [e for e in generate(4, 400, seed=seed) if e.type in LEDGER_EVENT_TYPES]
    rng.shuffle(events)
    checked = 0
    for book, _top in _fed_books(events, rng):
        if rng.random() < 0.2:
            old = _pack_v2(book)
            assert old[2] == 2 and book.to_bytes()[2] == 3
            again = EngineerBook.from_bytes(old)
            assert again.to_bytes() == book.to_bytes()
            assert again.balance() == book.balance()
            assert len(book.to_bytes()) < len(old)
            checked += 1
    assert checked > 20
    with pytest.raises(book_codec.BookCodecError, match="array"):
        body = b"[1,2]"
        EngineerBook.from_bytes(book_codec._HEADER.pack(book_codec.MAGIC, 3, len(body)) + body)


@PROPS
@given(st.lists(st.one_of(
    st.tuples(st.just("add"), st.binary(min_size=8, max_size=8), st.integers(0, 0xFFFF)),
    st.tuples(st.just("forget"), st.integers(0, 0x10010))), max_size=60))
def test_seen_ids_floor_skips_only_scans_that_would_drop_nothing(ops):
    """forget_before answered from the floor (no scan) returns and keeps
    what the plain scan over every record's day does, however adds (days
    below the floor too) and forgets interleave."""
    seen, plain = SeenIds(), []  # plain: (id, fingerprint, day), sorted by id
    for op in ops:
        if op[0] == "add":
            _, idd, day = op
            if seen.get(idd) is None:
                seen.add(idd, b"f" * 6, day)
                plain = sorted([*plain, (idd, b"f" * 6, day)])
        else:
            day_min = op[1]
            kept = [r for r in plain if r[2] >= day_min]
            assert seen.forget_before(day_min) == len(plain) - len(kept)
            plain = kept
        assert bytes(seen.blob) == b"".join(i + f + d.to_bytes(2, "big") for i, f, d in plain)
        assert seen.floor <= min((d for _, _, d in plain), default=seen.floor)


@pytest.mark.parametrize("seed", range(4))
def test_pending_events_are_encoded_once_and_packed_as_the_plain_code(seed, monkeypatch):
    """A live load keeps everything within the lateness pending and packs
    the book after each batch: each pending event is made compact once (not
    once per pack), the bytes equal the plain code's, and the memo stays
    aligned with the pending events (in-order arrivals, out-of-order ones
    inserted in the middle, finalized ones leaving from the front), also
    across a restore (new event objects)."""
    calls = []

    def counted(e):
        calls.append(e.event_id)
        return event_to_compact(e)

    monkeypatch.setattr(book_module, "event_to_compact", counted)
    rng = random.Random(seed)
    start = datetime(2026, 11, 2, tzinfo=timezone.utc)
    book = EngineerBook.empty("alice")
    book.ingest(GrantIssued("g1", "alice", "G1", 10**12, start - timedelta(days=1), None, "monthly"))
    restored_at, inserted, top = [], 0, start
    for i in range(160):
        at = start + timedelta(minutes=5 * i + rng.randrange(0, 4))
        if rng.random() < 0.2:  # behind the newest pending one: goes in the middle
            at -= timedelta(minutes=rng.randrange(6, 300))
            inserted += 1
        top = max(top, at)
        book.ingest(Usage(f"u{i}", "alice", "openai", "gpt", at, 100, 20, 0, 0, 10_000 + i),
                    top - timedelta(hours=6))
        book.ledger.drain()
        if rng.random() < 0.7:  # not every batch touches the book
            assert book.to_bytes() == _reference_pack(book)
            assert book._pjson == [orjson.dumps(event_to_compact(e)) for _, e in book.pending]
        if rng.random() < 0.04:
            book = EngineerBook.from_bytes(book.to_bytes())
            restored_at.append(len(book.pending))
    assert restored_at, "no restore happened"
    assert inserted > 10
    assert len(book.pending) > 50  # a live book: hours of usage pending
    # The checks call the unpatched function: `calls` are the book's. At
    # most once per event, plus once per event pending at each restore (new
    # objects); the plain code made one per pending event at every pack.
    assert len(calls) <= 160 + sum(restored_at)
    assert len(set(calls)) >= 100


def test_the_pending_events_json_memo_holds_its_bytes_only():
    """The memo lives as long as the events are pending (hours of an
    engineer's usage, live): each entry must cost about its length, not
    the 4 KiB buffer orjson wrote it in (measured: x 3 a worker's peak
    memory under a live load before the copy)."""
    start = datetime(2026, 11, 2, tzinfo=timezone.utc)
    book = EngineerBook.empty("alice")
    book.ingest(GrantIssued("g1", "alice", "G1", 10**12, start - timedelta(days=1), None, "monthly"))
    for i in range(300):
        at = start + timedelta(seconds=10 * i)
        book.ingest(Usage(f"u{i}", "alice", "openai", "gpt", at, 100, 20, 0, 0, 10_000 + i), start)
    book.ledger.drain()
    tracemalloc.start()
    try:
        book.to_bytes()
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    json_bytes = sum(len(b) for b in book._pjson)
    assert len(book._pjson) == 300
    # The entries, their bytes objects' headers and the list: well under 2x.
    assert held < 2 * json_bytes + 300 * 64, (held, json_bytes)
