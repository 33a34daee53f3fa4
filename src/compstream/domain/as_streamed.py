"""One engineer's book rebuilt from their events and the stream's late
decisions: what the live worker holds, where a sorted replay cannot say.

A late event (older than its book's watermark when it arrived) is applied on
top of the final state (book.py). Whether an event was late depends on what
the stream had read when it arrived, which the events alone do not record;
the worker records it (history: `late`, `applied_watermark`, `applied_seq`).
Given those decisions the book follows from the events alone:

* every event not late is pending until the watermark passes it, and the
  watermark never passes one before it arrives (else it would be late), so
  they can be taken in first, in any order;
* each late event, in the order the book applied them, is applied after
  advancing the book to the watermark it was judged against.

So a late usage dated before a grant's expiry but arriving after that expiry
was final draws on nothing (overdraft), where the sorted replay lets it draw
on the grant. `compstream diff` uses this for engineers with late events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Sequence

from compstream.domain.book import EngineerBook
from compstream.domain.events import LEDGER_EVENT_TYPES, Event, event_sort_key


class LateDecisionError(ValueError):
    """A recorded late decision the events contradict."""


def fold_as_streamed(engineer_id: str, events: Iterable[Event],
                     late: Sequence[tuple[str, datetime]]) -> EngineerBook:
    """`events`: the engineer's unique ledger events; `late`: (event id,
    watermark it was judged against) of each late one, in the order the book
    applied them. A decision for an event not in `events` is skipped (the
    worker's record may run ahead of a partial read); one whose event is not
    older than its watermark, or watermarks that go back, raise
    LateDecisionError (the worker never records those)."""
    by_id = {e.event_id: e for e in events if e.type in LEDGER_EVENT_TYPES}
    late_ids = {event_id for event_id, _ in late}
    book = EngineerBook.empty(engineer_id)
    for e in sorted((e for e in by_id.values() if e.event_id not in late_ids), key=event_sort_key):
        book.ingest(e, None, want_balance=False)
    previous: datetime | None = None
    for event_id, watermark in late:
        event = by_id.get(event_id)
        if event is None:
            continue
        if event_sort_key(event)[0] >= watermark:
            raise LateDecisionError(f"{engineer_id}: event {event_id!r} recorded late under watermark "
                                    f"{watermark.isoformat()}, but it is not older than it")
        if previous is not None and watermark < previous:
            raise LateDecisionError(f"{engineer_id}: late event {event_id!r} recorded under watermark "
                                    f"{watermark.isoformat()}, before the previous one's {previous.isoformat()}")
        previous = watermark
        book.advance(watermark)
        book.ingest(event, watermark, want_balance=False)
    return book
