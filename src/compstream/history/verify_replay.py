"""Second half of verification: re-derive postings from the stored events.

A forger who rewrites a whole chain consistently (every hash recomputed)
passes the chain check; the postings then no longer follow from the events.
This replays the engineer's stored events (raw payloads, stored order so the
ledger's "first occurrence wins" dedup sees what the stream saw) through the
ledger core and compares posting by posting.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from compstream.domain.book import EngineerBook
from compstream.domain.events import LEDGER_EVENT_TYPES, EventError, event_from_dict
from compstream.domain.replay import replay_detailed
from compstream.history.findings import Finding
from compstream.history.rows import PostingRow
from compstream.history.store import HistoryStore

REPLAY_MISMATCH, NOT_DERIVABLE, NOT_STORED, BAD_EVENT, NOT_FINAL = (
    "replay_mismatch", "not_derivable", "not_stored", "bad_event", "not_final",
)
_COMPARED = ("kind", "grant_id", "amount_nanos", "cause_event_id", "event_time", "available_after_nanos", "hash")


REPLAY_HORIZON = datetime(9000, 1, 1, tzinfo=timezone.utc)  # finalize everything


def _as_streamed(engineer_id: str, rows: list, events: list) -> list:
    """The one deterministic late rule, replayed: an engineer with late events
    (applied on top of the state final through the book's watermark at that
    moment, as recorded in `applied_watermark`) is replayed through a book in
    the stored order, each event applied under its recorded watermark. The
    tampering checks stay: a forged amount, payload or posting still differs."""
    book = EngineerBook.empty(engineer_id)
    postings = []
    for row, event in zip(rows, events, strict=True):
        if event.type not in LEDGER_EVENT_TYPES:
            continue
        under = row.applied_watermark
        if under is not None:
            postings += book.advance(under).postings
        postings += book.ingest(event, under, want_balance=False).postings
    # What the stream finalized after the engineer's last event (sweeps);
    # postings past the stored tail are expected and not flagged.
    postings += book.advance(REPLAY_HORIZON).postings
    return postings


def replay_findings(store: HistoryStore, engineer_id: str,
                    finals: dict[int, datetime | None] | None = None) -> list[Finding]:
    """`finals`: a cache of each partition's newest `final_through`, shared
    across the engineers of one verification."""
    findings: list[Finding] = []
    events, rows = [], []
    for row in store.events_for(engineer_id):
        try:
            events.append(event_from_dict(json.loads(row.payload)))
            rows.append(row)
        except (EventError, ValueError) as exc:
            findings.append(Finding(engineer_id, 0, BAD_EVENT, f"event {row.event_id}: {exc}"))
    stored = store.postings_for(engineer_id)
    if any(row.late and row.applied_watermark is not None for row in rows):
        replayed = [PostingRow.from_posting(p) for p in _as_streamed(engineer_id, rows, events)]
    else:
        replayed = [PostingRow.from_posting(p) for p in replay_detailed(events).postings.get(engineer_id, [])]
    by_seq = {p.seq: p for p in replayed}
    for posting in stored:
        twin = by_seq.get(posting.seq)
        if twin is None:
            findings.append(Finding(engineer_id, posting.seq, NOT_DERIVABLE, "no replayed posting at this seq"))
            continue
        differ = [name for name in _COMPARED if getattr(posting, name) != getattr(twin, name)]
        if differ:
            detail = ", ".join(f"{n}: stored {getattr(posting, n)!r} vs replayed {getattr(twin, n)!r}"
                               for n in differ[:3])
            findings.append(Finding(engineer_id, posting.seq, REPLAY_MISMATCH, detail))
    # Replayed postings past the stored tail are expected (expiries the
    # stream's watermark has not reached) unless they precede the tail, or
    # precede what history claims final: a watermark row vouches that every
    # posting of its partition's engineers dated before its final_through is
    # written (rows.WatermarkRow). That also finds a deleted tail, which the
    # chain alone shows only against a stored digest.
    horizon = max((p.event_time for p in stored), default=None)
    final = _final_through(store, {row.kafka_partition for row in rows}, {} if finals is None else finals)
    stored_seqs = {p.seq for p in stored}
    for twin in replayed:
        if twin.seq in stored_seqs:
            continue
        if horizon is not None and twin.event_time <= horizon:
            findings.append(Finding(engineer_id, twin.seq, NOT_STORED,
                                    f"replay derives a {twin.kind} posting not stored"))
        elif final is not None and twin.event_time < final:
            findings.append(Finding(engineer_id, twin.seq, NOT_FINAL,
                                    f"replay derives a {twin.kind} posting at {twin.event_time.isoformat()}, "
                                    f"before the final_through {final.isoformat()} history claims, not stored"))
    return findings


def _final_through(store: HistoryStore, partitions: set[int], finals: dict[int, datetime | None]) -> datetime | None:
    """The least newest final_through over the engineer's partitions (one, but
    a store may hold rows of another partitioning): None if any has none."""
    found = []
    for p in partitions:
        if p not in finals:
            row = store.final_through(p)
            finals[p] = row.final_through if row is not None else None
        found.append(finals[p])
    return None if not found or None in found else min(found)  # type: ignore[type-var]
