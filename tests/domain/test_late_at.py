"""events.LateAt: a late decision of the stream replayed by a book that reads
the events in another order (a rebuild). Waiting among the pending events at
its watermark, it is applied there, late, on top of the state final through
it: the book ends as the stream's did, whatever the read order, and it
survives the book's bytes (one record, or a head and parts)."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_support import at, event_lists, grant, usage

from compstream.domain.as_streamed import fold_as_streamed
from compstream.domain.book import EngineerBook
from compstream.domain.events import LateAt, event_sort_key


def _stream(events, rng: random.Random):
    """A live book: the events in the given order under watermarks that move
    forward at random (some events arrive behind them, late). Returns the book
    and its late decisions: (event id, watermark), in the order applied."""
    book, late, watermark = EngineerBook.empty("e1"), [], None
    for e in events:
        if rng.random() < 0.4:
            t = event_sort_key(e)[0] + timedelta(hours=rng.choice([-3, -1, 0, 1, 2]))
            watermark = t if watermark is None or t > watermark else watermark
        under = book.watermark
        if book.ingest(e, watermark, want_balance=False).late:
            late.append((e.event_id, under))
    return book, late


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists(), seed=st.integers(0, 10**6))
def test_replayed_decisions_give_the_streams_book_in_any_read_order(events, seed):
    events = [e for e in events if e.engineer_id == "e1"]
    rng = random.Random(seed)
    live, late = _stream(events, rng)
    live.finalize_all()
    decisions = {event_id: (w, order) for order, (event_id, w) in enumerate(late)}
    reread = list(events)
    rng.shuffle(reread)
    book = EngineerBook.empty("e1")
    for e in reread:  # nothing finalized while reading: the rebuild's cap (or a backlog in one batch)
        result = book.ingest(e, None, want_balance=False, late_under=decisions.get(e.event_id))
        assert result.late == (e.event_id in decisions)
    assert sum(type(item) is LateAt for _, item in book.pending) == len(set(decisions) & {e.event_id for e in events})
    restored = EngineerBook.from_bytes(book.to_bytes())  # the waiting decisions survive the bytes
    assert restored.to_bytes() == book.to_bytes()
    assert restored.balance() == book.balance()
    for b in (book, restored):
        b.finalize_all()
        assert b.final_balance() == live.final_balance()
    as_streamed = fold_as_streamed("e1", events, late)
    as_streamed.finalize_all()
    assert book.final_balance() == as_streamed.final_balance()


def test_a_late_usage_waits_for_its_watermark_then_finds_the_grant_expired():
    # Live: the grant expired at 5h and 10h was final when u arrived (dated 1h):
    # overdraft. A rebuild reads u before the expiry is final, with the decision.
    g, u = grant("g", "A", 100, 0, 5), usage("u", 1, 30)
    book = EngineerBook.empty("e1")
    book.ingest(g, at(0))
    result = book.ingest(u, at(2), late_under=(at(10), 0))
    assert result.late and [p.kind for p in result.postings] == ["issue"]  # u waits: not final at 2h
    assert book.balance(at(3)).consumed_nanos == 0  # not before its watermark
    assert book.balance().overdraft_nanos == 30  # with it: applied at 10h, after the expiry
    fin = book.advance(at(11))
    assert [p.kind for p in fin.postings] == ["expire", "overdraft"]
    assert [r.code for r in fin.reports] == ["late"]
    # Judged again (no decision), u would draw on the grant.
    again = EngineerBook.empty("e1")
    again.ingest(g, at(0))
    again.ingest(u, at(2))
    again.advance(at(11))
    assert again.final_balance().consumed_nanos == 30 and again.final_balance().overdraft_nanos == 0


def test_a_decision_under_a_watermark_the_book_has_passed_is_taken_as_the_book_stands():
    book = EngineerBook.empty("e1")
    book.ingest(grant("g", "A", 100, 0, 5), at(12))
    result = book.ingest(usage("u", 1, 30), at(12), late_under=(at(10), 0))
    assert result.late and not any(type(item) is LateAt for _, item in book.pending)
    assert book.final_balance().overdraft_nanos == 30
