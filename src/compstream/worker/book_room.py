"""Room left in an engineer's book, whose size is bounded (COMPSTREAM_BOOK_
BYTES_MAX: the memory one engineer may take; its changelog records are cut to
fit the broker whatever the size, worker/book_parts.py).

Per batch. Far from the limit a book pays one addition per event: a loose
upper bound of what an applied usage event adds (its 16-byte id record plus
the length of its canonical JSON, longer than its pending form). When that
bound crosses `bytes_max`, the book is advanced to the watermark (as ingest
would) and measured exactly, after forgetting its oldest days of usage ids
down to 7/8 of the limit where it can (`to_bytes`: never the watermark's day);
from then on, for the rest of the batch, its size is tracked event by event:
+ the pending form of each applied event, − the pending events each ingest
finalizes. When it crosses the limit again it is measured again if that can
free something: the last measure got down to 7/8 (so 1/8 was used since, and
older days may remain), or the watermark entered a new day. Usage that would
still take the book past the limit is refused; events the book would not
apply anyway (duplicates, conflicts, too old) pass, so the book classifies
them as ever, and so does usage a rebuild knows the stream applied (`take`:
worker/recorded_late.py). A recorded late decision waits in the book at its
watermark (events.LateAt), and is counted so.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime
from typing import Callable

import orjson

from compstream.domain.book import EngineerBook, Finalized, PendingKey
from compstream.domain.book_codec import RECORD, event_to_compact, to_us
from compstream.domain.events import Event, LateAt

_DAY_US = 86_400_000_000
# Returned by admit() for an event to refuse.
REFUSE = None
# What a rebuild's recorded late decision adds to an event's pending form
# (events.LateAt: ["L",<watermark us>,<order>,<event>]), at most.
LATE_AT_BYTES_MAX = len('["L",') + 20 + 1 + 20 + 1 + 1
LateUnder = tuple[datetime, int]  # a recorded late decision: (watermark, order)


def pending_bytes(event: Event | LateAt) -> int:
    """What one pending event adds to a packed book: its compact form and a comma."""
    try:
        return len(orjson.dumps(event_to_compact(event))) + 1
    except orjson.JSONEncodeError:  # the book falls back to json here; same length or near
        return len(repr(event_to_compact(event))) + 1


class BookRoom:
    def __init__(self, bytes_max: int, outcome: Callable[[str, Finalized, datetime], None]):
        self.bytes_max = bytes_max
        self.outcome = outcome  # where an early advance hands its postings, alerts, reports
        self.size: dict[str, int] = {}  # loose upper bound (engineer not in tight)
        # engineer -> [tracked size, watermark day at measure, measure got down to the target]
        self.tight: dict[str, list[int]] = {}
        self.target = bytes_max * 7 // 8

    def loaded(self, engineer: str, size: int) -> None:
        self.size[engineer] = size

    def is_tight(self, engineer: str) -> bool:
        """Measured near its limit in this batch: tracked event by event."""
        return engineer in self.tight

    def would_be_tight(self, book: EngineerBook, event: Event, text: str, late_under: LateUnder | None = None) -> bool:
        """Whether `admit` would have to measure the book for this event."""
        # An upper bound of what ingesting it adds: its id record and its canonical
        # JSON (longer than its pending form), and a recorded decision's wrapper.
        growth = RECORD + len(text) + 1 if event.type == "usage" else 0
        if late_under is not None:
            growth += LATE_AT_BYTES_MAX
        return self.size[book.engineer_id] + growth > self.bytes_max

    def admit(self, book: EngineerBook, event: Event, text: str, watermark: datetime,
              late_under: LateUnder | None = None, take: bool = False) -> tuple[int, int] | None:
        """Before `book.ingest(event, watermark, late_under=late_under)`:
        REFUSE, or (growth, freed) to pass to `taken` afterwards. `take`:
        never refuse it (a rebuild, for an event the stream applied)."""
        engineer = book.engineer_id
        room = self.tight.get(engineer)
        if room is None:
            growth = RECORD + len(text) + 1 if event.type == "usage" else 0
            if late_under is not None:
                growth += LATE_AT_BYTES_MAX
            if self.size[engineer] + growth <= self.bytes_max:
                return growth, 0
            room = self.tight[engineer] = self._measure(book, watermark, event.event_time, shrink=not take)
        growth, freed = self._growth(book, event, watermark, late_under), self._freed(book, watermark)
        if room[0] + growth - freed > self.bytes_max and not take and (room[2] or _day(watermark) > room[1]):
            room[:] = self._measure(book, watermark, event.event_time, shrink=True)
            freed = 0
        # `take`: the stream applied it, so a rebuild takes it whatever its
        # size (counted, so new usage is refused).
        if growth and room[0] + growth - freed > self.bytes_max and not take and book.would_apply(event):
            if freed:  # advance as ingest would have, so the next event does not count these again
                self.outcome(engineer, book.advance(watermark), event.event_time)
                room[0] -= freed
            return REFUSE
        return growth, freed

    def taken(self, engineer: str, admitted: tuple[int, int], applied: bool) -> None:
        """After ingest: account for what it added (if applied) and finalized."""
        growth, freed = admitted
        room = self.tight.get(engineer)
        if room is None:
            self.size[engineer] += growth if applied else 0
        else:
            room[0] += (growth if applied else 0) - freed

    def _measure(self, book: EngineerBook, watermark: datetime, when: datetime, shrink: bool) -> list[int]:
        """`shrink`: forget old days' ids down to the target where it can;
        not for an event a rebuild takes (its book remembers what the
        stream did). Measured without, a later measure may still free room."""
        self.outcome(book.engineer_id, book.advance(watermark), when)
        size = len(book.to_bytes(self.target if shrink else None))
        return [size, _day(watermark), size <= self.target or not shrink]

    @staticmethod
    def _growth(book: EngineerBook, event: Event, watermark: datetime, late_under: LateUnder | None) -> int:
        if event.type != "usage":
            return 0  # HR events are never refused (and are few)
        t = event.event_time
        if late_under is not None and late_under[0] > t and (book.watermark is None or book.watermark <= late_under[0]):
            # Waits at the stream's watermark (book.ingest), unless final at once.
            if late_under[0] < watermark:
                return RECORD
            return RECORD + pending_bytes(LateAt(event, *late_under))  # type: ignore[arg-type]  # usage here
        if (book.watermark is not None and t < book.watermark) or t < watermark:
            return RECORD  # late, or pending and final at once: only its id stays
        return RECORD + pending_bytes(event)

    @staticmethod
    def _freed(book: EngineerBook, watermark: datetime) -> int:
        """Bytes of the pending events ingest's advance to `watermark` finalizes."""
        if book.watermark is not None and watermark <= book.watermark:
            return 0
        pending = book.pending
        n = bisect_left(pending, watermark, key=_time)
        return sum(pending_bytes(e) for _, e in pending[:n])


def _time(item: tuple[PendingKey, Event | LateAt]) -> datetime:
    return item[0][0]


def _day(t: datetime) -> int:
    return to_us(t) // _DAY_US
