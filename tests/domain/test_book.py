"""EngineerBook: statuses, late events, finality, bytes; and the chain module."""

from __future__ import annotations

from datetime import timedelta

import pytest
from ledger_support import at, grant, offboard, revoke, usage

from compstream.domain.book import BookError, EngineerBook
from compstream.domain.book_codec import BookCodecError, SeenIds, id_digest
from compstream.domain.chain import ChainError, canonical_posting, canonical_posting_reference, verify_chain
from compstream.domain.replay import replay_detailed


def test_statuses_duplicate_and_conflict():
    book = EngineerBook.empty("e1")
    assert book.ingest(grant("g", "A", 100, 0)).status == "applied"
    assert book.ingest(usage("u", 1, 10)).status == "applied"
    assert book.ingest(usage("u", 1, 10)).status == "duplicate"
    res = book.ingest(usage("u", 1, 99))
    assert res.status == "conflict"
    assert [r.code for r in res.reports] == ["conflict"]
    assert res.balance.consumed_nanos == 10


def test_postings_only_when_final_then_in_ledger_order():
    book = EngineerBook.empty("e1")
    res = book.ingest(usage("u", 2, 30), watermark=at(0))
    assert res.postings == [] and res.balance.overdraft_nanos == 30
    res = book.ingest(grant("g", "A", 100, 1), watermark=at(0))
    assert res.postings == [] and res.balance.overdraft_nanos == 0  # refolded: grant first
    assert res.balance.remaining_nanos == 70
    fin = book.advance(at(1))  # strict: the grant at 1h is not final yet
    assert fin.postings == []
    fin = book.advance(at(3))
    assert [(p.seq, p.kind) for p in fin.postings] == [(1, "issue"), (2, "consume")]
    assert fin.alerts == []
    assert book.advance(at(2)).postings == []  # watermark never goes back


def test_late_event_is_applied_flagged_and_reported():
    book = EngineerBook.empty("e1")
    book.ingest(grant("g", "A", 100, 0, 5), watermark=at(10))
    res = book.ingest(usage("late", 1, 30), watermark=at(10))
    assert res.late and res.status == "applied"
    assert [r.code for r in res.reports] == ["late"]
    # applied on top of the final state: A already expired, so it is overdraft
    assert res.balance.overdraft_nanos == 30
    assert [p.kind for p in res.postings] == ["overdraft"]


def test_late_grant_already_past_expiry_expires_at_once():
    book = EngineerBook.empty("e1")
    book.advance(at(10))
    res = book.ingest(grant("g", "A", 100, 0, 5))
    assert res.late
    assert [p.kind for p in res.postings] == ["issue", "expire"]
    assert res.balance.expired_nanos == 100


def test_finalize_all_matches_replay_with_reports_and_alerts():
    events = [grant("g", "A", 100, 0, 5), usage("u", 1, 90), revoke("r", "X", 2),
              offboard("o", 3), grant("g2", "B", 10, 4)]
    book = EngineerBook.empty("e1")
    reports = []
    for e in reversed(events):
        res = book.ingest(e)
        reports += res.reports
    fin = book.finalize_all()
    reports += fin.reports
    ref = replay_detailed(events)
    assert fin.postings == ref.postings["e1"]
    assert fin.alerts == ref.alerts["e1"]
    assert [(r.code, r.event_id) for r in reports] == [(r.code, r.event_id) for r in ref.reports]
    assert book.final_balance() == ref.balances["e1"] == book.balance()


def test_bytes_round_trip_and_typical_size():
    book = EngineerBook.empty("eng-000123")
    for g in range(3):
        book.ingest(grant(f"grant-{g}", f"G-2026-{g}", 100 * 10**9, g * 720, g * 720 + 1080,
                          eng="eng-000123"))
    for i in range(60):
        book.ingest(usage(f"usage-evt-{i:08d}", 100 + i, 10**8, eng="eng-000123"),
                    watermark=at(100 + i - 2))
    data = book.to_bytes()
    again = EngineerBook.from_bytes(data)
    assert again.to_bytes() == data
    assert again.balance() == book.balance()
    assert len(data) <= 2048, len(data)  # 63 seen ids (1008 B) + 3 pending + 3 lots
    with pytest.raises(BookCodecError):
        EngineerBook.from_bytes(b"XX" + data[2:])
    with pytest.raises(BookCodecError):
        EngineerBook.from_bytes(data[:10])


def test_book_rejects_foreign_engineer():
    with pytest.raises(BookError):
        EngineerBook.empty("e1").ingest(usage("u", 1, 1, eng="e2"))


def test_seen_ids_sorted_lookup():
    s = SeenIds()
    ids = [f"id-{i}" for i in range(200)]
    for i, x in enumerate(ids):
        s.add(id_digest(x), i.to_bytes(6, "big"))
    assert all(s.get(id_digest(x)) == i.to_bytes(6, "big") for i, x in enumerate(ids))
    assert s.get(id_digest("nope")) is None and len(s) == 200


def test_canonical_posting_matches_reference_json():
    fields = dict(engineer_id="é\"\n", seq=3, kind="consume", grant_id=None, amount_nanos=5,
                  cause_event_id="x\u2028", event_time=at(1), available_after_nanos=-7)
    assert canonical_posting(**fields) == canonical_posting_reference(**fields)


def test_verify_chain_detects_tampering():
    r = replay_detailed([grant("g", "A", 100, 0), usage("u", 1, 30), usage("v", 2, 80)])
    rows = [p.to_dict() for p in r.postings["e1"]]
    verify_chain(rows)
    rows[1]["amount_nanos"] = 31
    with pytest.raises(ChainError) as exc:
        verify_chain(rows)
    assert exc.value.seq == 2
    rows = [p.to_dict() for p in r.postings["e1"]]
    del rows[1]
    with pytest.raises(ChainError):
        verify_chain(rows)
    assert book_watermark_semantics() is None


def book_watermark_semantics():
    book = EngineerBook.empty("e1")
    book.advance(at(5))
    assert book.as_of() == at(5) - timedelta(microseconds=1)
    return None
