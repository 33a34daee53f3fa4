"""LedgerProcessor's cache of live books (worker/book_cache.py) changes
nothing the processor returns: every BatchResult equals the one of a
processor that deserializes every book every batch, also when the table
does not hold what the last batch returned (a lost batch, a rollback)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from compstream.domain.book import EngineerBook
from compstream.domain.events import LEDGER_EVENT_TYPES, GrantRevoked, Usage
from compstream.synth import generate
from compstream.worker.book_cache import BookCache
from compstream.worker.processor import LedgerProcessor, SourceMessage
from support.messages import source_messages

PARTITIONS = 4
T = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _messages(seed: int) -> list[SourceMessage]:
    """Synthetic traffic plus what the worker must survive: redelivered and
    conflicting ids, late events, revocations, garbage, a wrong key."""
    rng = random.Random(seed)
    events = list(generate(10, 500, seed=seed, with_hr=True))
    usage = [e for e in events if type(e) is Usage]
    for e in rng.sample(usage, 20):
        events.insert(rng.randrange(len(events)), e)  # duplicates
    for e in rng.sample(usage, 5):  # conflicts: same id, other cost
        events.append(Usage(e.event_id, e.engineer_id, e.provider, e.model, e.occurred_at,
                            e.input_tokens, e.output_tokens, 0, 0, (e.cost_nanos or 0) + 1))
    for e in rng.sample(usage, 10):  # late: a day before what was already seen
        events.append(Usage("late-" + e.event_id, e.engineer_id, e.provider, e.model,
                            e.occurred_at - timedelta(days=1), 1, 1, 0, 0, 1000))
    grants = [e for e in events if e.type == "grant_issued"]
    for g in rng.sample(grants, 4):
        events.insert(rng.randrange(len(events)),
                      GrantRevoked("rev-" + g.event_id, g.engineer_id, g.grant_id,
                                   g.effective_at + timedelta(days=2)))
    out = source_messages(events, PARTITIONS, T)
    out.insert(100, SourceMessage("usage", 0, 10_000, b"eng-00000", b"\xc3\x01garbage", T))
    out.insert(200, SourceMessage("usage", 1, 10_001, b"someone-else", out[5].value, T))
    return out


def _run(messages, cache_max: int, seed: int, lose_every: int = 0):
    """Drive a processor like the agent does; with `lose_every`, every n-th
    batch's books are not stored (as if the batch failed after processing)."""
    rng = random.Random(seed)
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(3600, load_book=store.get, partitions=PARTITIONS)
    proc.book_cache = BookCache(cache_max)
    results, i, n = [], 0, 0
    while i < len(messages):
        size = rng.randrange(1, 120)
        batch = messages[i:i + size]
        res = proc.process(batch, keys=lambda: list(store), sweep=rng.random() < 0.7,
                           lagging=[("grants", p) for p in range(PARTITIONS) if rng.random() < 0.1])
        results.append(res)
        n += 1
        if lose_every and n % lose_every == 0:
            continue  # books not stored: the next batch loads the older bytes
        store.update({eng: data for eng, (data, _p) in res.books.items()})
        i += size
    return results, store, proc.book_cache


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("lose_every", [0, 3])
def test_cached_books_give_the_same_results_as_deserializing(seed, lose_every):
    messages = _messages(seed)
    reference, ref_store, ref_cache = _run(messages, 0, seed, lose_every)
    assert ref_cache.hits == 0
    for cache_max in (2, 1_000):  # evicting constantly, and holding every book
        results, store, cache = _run(messages, cache_max, seed, lose_every)
        assert store == ref_store
        assert len(results) == len(reference)
        for got, want in zip(results, reference, strict=True):
            assert got == want
        assert cache.hits > 0 and len(cache) <= cache_max
        if lose_every:
            assert cache.misses > 0
    assert sum(r.swept + r.swept_touched for r in reference) > 0 and sum(len(r.dead_letters) for r in reference) > 0


def test_book_cache_returns_a_book_only_for_its_exact_bytes():
    cache = BookCache(2)
    a, b = EngineerBook.empty("a"), EngineerBook.empty("b")
    data = a.to_bytes()
    cache.put("a", data, a)
    assert cache.take("a", data[:-1] + b"x") is None  # other bytes: stale, and dropped
    assert cache.take("a", data) is None
    cache.put("a", data, a)
    assert cache.take("a", None) is None  # table lost the book
    cache.put("a", data, a)
    assert cache.take("a", bytes(bytearray(data))) is a  # equal, not identical
    assert cache.take("a", data) is None  # taken: a batch owns it now
    cache.put("a", data, a)
    cache.put("b", b.to_bytes(), b)
    cache.put("c", b"c", EngineerBook.empty("c"))  # bound 2: the oldest goes
    assert len(cache) == 2 and cache.take("a", data) is None
    with pytest.raises(ValueError):
        BookCache(-1)
    off = BookCache(0)
    off.put("a", data, a)
    assert len(off) == 0


def _state(book: EngineerBook) -> tuple:
    led = book.ledger
    lots = [(x.grant_id, x.amount, x.remaining, x.consumed, x.effective_at, x.expires_at, x.key)
            for x in led.lots]
    return (book.engineer_id, book.watermark, book.pending, bytes(book.seen.blob),
            lots, list(led.open), led.expiries, led.closed, led.remaining, led.open_amount,
            led.thresholds, led.fired, led.od_flag, led.seq, led.head, led.record,
            [getattr(led, c) for c in ("issued", "consumed", "overdraft", "expired", "revoked",
                                       "forfeited", "refund_unapplied", "input_tokens",
                                       "output_tokens", "cache_read_tokens", "cache_write_tokens",
                                       "unpriced")])


def _one_engineers_events(seed: int, n: int) -> list:
    """One engineer's ledger events, with the first three grants revoked an hour in."""
    events = [e for e in generate(1, n, seed=seed) if e.type in LEDGER_EVENT_TYPES]
    grants = [e for e in events if e.type == "grant_issued"]
    return events + [GrantRevoked(f"rev-{g.event_id}", g.engineer_id, g.grant_id,
                                  g.effective_at + timedelta(hours=1)) for g in grants[:3]]


@pytest.mark.parametrize("seed", range(5))
def test_settle_makes_a_live_book_equal_to_its_bytes(seed):
    rng = random.Random(seed)
    events = _one_engineers_events(seed, 150)
    rng.shuffle(events)
    book = EngineerBook.empty(events[0].engineer_id)
    top = None
    for e in events:
        top = e.event_time if top is None else max(top, e.event_time)
        book.ingest(e, top - timedelta(hours=rng.randrange(0, 48)))
        if rng.random() < 0.2:
            book.balance()  # fills the provisional cache
        if rng.random() < 0.3:
            data = book.to_bytes()
            assert book.settle()
            assert _state(book) == _state(EngineerBook.from_bytes(data))
            assert book.to_bytes() == data


@pytest.mark.parametrize("seed", range(6))
def test_a_settled_book_keeps_its_caches_and_matches_a_restored_twin(seed):
    """settle keeps the provisional cache and the pending events' JSON; a
    settled book and one restored from its bytes then take the same events
    (in order, out of order, late, scheduled ahead) and give the same
    balances (for every `until`) and the same bytes at every step."""
    rng = random.Random(seed)
    events = _one_engineers_events(seed, 200)
    events.sort(key=lambda e: e.event_time)
    for i in range(0, len(events) - 3, 7):  # some out of order, some late
        events[i], events[i + 3] = events[i + 3], events[i]
    live = EngineerBook.empty(events[0].engineer_id)
    twin, top, kept = None, None, 0
    for e in events:
        top = e.event_time if top is None else max(top, e.event_time)
        watermark = top - timedelta(hours=rng.choice([0, 2, 6, 30]))
        for book in (live, twin) if twin is not None else (live,):
            book.ingest(e, watermark)
            book.ledger.drain()
        if twin is not None:
            for until in (None, top, top - timedelta(hours=3)):
                assert live.balance(until) == twin.balance(until)
                assert live.as_of(until) == twin.as_of(until)
            assert live.to_bytes() == twin.to_bytes()
        if rng.random() < 0.4:
            live.balance()  # fills the cache the settle keeps
            data = live.to_bytes()
            cache = live._prov
            assert live.settle()
            kept += cache is not None and live._prov is cache
            twin = EngineerBook.from_bytes(data)
    assert kept > 0


def test_settle_refuses_a_book_with_undrained_outputs():
    book = EngineerBook.empty("e1")
    book.ledger.reports.append("pending report")
    assert not book.settle()


def test_book_cache_is_bounded_in_bytes():
    """Books with many pending events are large: the cache also keeps the
    bytes of the books it holds under its bound, oldest out first, and does
    not keep a book larger than the bound on its own."""
    books = {name: EngineerBook.empty(name) for name in ("a", "b", "c")}
    data = {name: book.to_bytes() for name, book in books.items()}
    size = len(data["a"])
    cache = BookCache(10, bytes_max=2 * size + 1)
    for name in ("a", "b", "c"):
        cache.put(name, data[name], books[name])
    assert len(cache) == 2 and cache.bytes == 2 * size
    assert cache.take("a", data["a"]) is None and cache.take("c", data["c"]) is books["c"]
    assert cache.bytes == size  # b is left
    cache.put("big", b"x" * (3 * size), EngineerBook.empty("big"))
    assert cache.take("big", b"x" * (3 * size)) is None and cache.bytes == size
    cache.put("b", data["b"], books["b"])  # put again: counted once
    assert cache.bytes == size and len(cache) == 1
    cache.clear()
    assert cache.bytes == 0 and len(cache) == 0
