"""Streaming state of one engineer: what the Faust worker keeps per key.

A book is a *finalized* ledger (every event with event time strictly before
the book's watermark, folded in ledger order, postings emitted) plus a small
sorted list of *pending* events at or after that watermark. The caller passes
the watermark (no clock here); the worker uses max usage event time seen on the
partition minus lateness_s. Then, for any arrival order in which no event is
more than lateness_s behind the max seen before it, the finalized state equals
the sorted replay: `advance(W)` == `replay(..., as_of=W - 1us)` and
`finalize_all()` == `replay(..., as_of=None)`, postings and hashes included.

* Watermark semantics: final = event time < watermark (strict), so an event
  exactly lateness_s behind is still on time.
* Provisional balance = finalized + pending, refolded lazily (a cached
  prefix; balance() applies the events after it instead of refolding).
* A late event (time < watermark) is still applied, on top of the finalized
  state, flagged late=True and reported (code "late"); its postings are
  appended after those already emitted. Here stream and replay may differ.
* Postings, alerts and reports come out only when final, in ledger order.
* Dedup memory: 16 bytes per remembered event (see book_codec.SeenIds). HR
  event ids are kept for good; usage ids only while the usage is at most
  SEEN_USAGE_DAYS older than the watermark, so a book stays small however long
  an engineer's agents run (a book is one changelog record, and the broker
  refuses records over 1 MiB). `to_bytes(bytes_max)` shortens that horizon for
  a book that would still be too large, down to the watermark's day. Usage
  older than the horizon and not remembered cannot be told apart from a
  duplicate: it is refused with status too_old (the worker dead-letters it),
  never counted a second time. Usage a book has no room for even then is
  refused by the worker before ingest (worker/book_room.py, `would_apply`).
  A busy past day's ids are sealed (SEAL_RECORDS_MIN): the changelog then
  keeps them in a record of their own instead of in every write of the book.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from heapq import heapify
from operator import attrgetter
from typing import Any

from compstream.domain.alerts import DEFAULT_THRESHOLDS, Alert, check_thresholds
from compstream.domain.balance import Balance, Posting, Report
from compstream.domain.book_codec import (
    EPOCH,
    KEEP_DAY,
    RECORD,
    SeenIds,
    day_of,
    dumps_compact,
    event_from_compact,
    event_to_compact,
    fingerprint_digest,
    from_us,
    id_digest,
    pack_spliced,
    to_us,
    unpack,
)
from compstream.domain.events import Event, EventError, LateAt, event_sort_key
from compstream.domain.ledger import Ledger, Lot, check_event
from compstream.domain.twin import fast_constructor

APPLIED = "applied"
DUPLICATE = "duplicate"
CONFLICT = "conflict"
TOO_OLD = "too_old"
# Usage ids are remembered for this many days of event time behind the
# watermark: far beyond producer retries and crash replays (minutes) and a
# provider re-sending a day's export; at ~1,000 usage events a day an engineer's
# book keeps ~480 KB of ids, under the broker's 1 MiB record limit.
SEEN_USAGE_DAYS = 30
_DAY_US = 86_400_000_000
# A day behind the watermark's day with at least this many usage ids (1 KiB)
# is sealed (book_codec.SeenIds): its ids leave the book's own changelog
# record for one of their own, written once. A busy book's record then holds
# its pending usage and the ids of its open days, not 30 days of ids.
SEAL_RECORDS_MIN = 64
END_OF_TIME = datetime.max.replace(tzinfo=timezone.utc)
# Pending insertions a book remembers between two take_changed_times();
# past it every pending event counts as changed.
INSERTED_MAX = 4096
_LAST_US = to_us(datetime.max.replace(tzinfo=timezone.utc))
_US = timedelta(microseconds=1)
_COUNTERS = (
    "issued", "consumed", "overdraft", "expired", "revoked", "forfeited", "refund_unapplied",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "unpriced",
)


_counters = attrgetter(*_COUNTERS)


class BookError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Finalized:
    postings: list[Posting] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class IngestResult:
    status: str  # applied | duplicate | conflict | too_old
    late: bool
    balance: Balance | None  # provisional: finalized + pending (None: not asked for)
    postings: list[Posting]  # newly final, in order (append to the history)
    alerts: list[Alert]
    reports: list[Report]  # conflict, late, revoke_unknown_grant, ...


# Built once or twice per event: without the frozen __init__ (domain/twin.py).
_new_result = fast_constructor(IngestResult)
_new_finalized = fast_constructor(Finalized)

# A pending event's sort key: events.event_sort_key's (event time, rank, event_id).
PendingKey = tuple[datetime, int, str]


class EngineerBook:
    __slots__ = ("engineer_id", "ledger", "watermark", "pending", "seen", "taken", "seen_from_day", "_prov", "_prov_n",
                 "_pjson", "_pjson_from", "_inserted")

    def __init__(self, engineer_id: str, ledger: Ledger, watermark: datetime | None,
                 pending: list[tuple[PendingKey, Event | LateAt]], seen: SeenIds, taken: int | None = None,
                 seen_from_day: int = 0):
        self.engineer_id = engineer_id
        self.ledger = ledger
        self.watermark = watermark  # everything with event time < watermark is final
        self.pending = pending  # sorted (key, event), every time >= watermark
        self.seen = seen
        # Events taken in (applied), ever: the seen set forgets old usage ids.
        self.taken = len(seen) if taken is None else taken
        # Usage ids of days before this one are forgotten (days since the epoch).
        self.seen_from_day = seen_from_day
        # Provisional cache: the finalized ledger with pending[:_prov_n]
        # applied (a prefix: events scheduled ahead of the caller's present,
        # e.g. next month's grant, are left out of balances and so of it).
        self._prov: Ledger | None = None
        self._prov_n = 0
        # The JSON of each pending event's compact form, in pending order
        # (None: not encoded yet; the whole list None: not built yet). A book's
        # changelog record holds every pending event and is rewritten each
        # batch that touches the book; under a live load everything within the
        # lateness is pending (hours of an engineer's usage), and re-encoding
        # it all at every pack was a fifth of the worker at 10k ev/s. Entries
        # from `_pjson_from` on may be None; those before it are encoded.
        self._pjson: list[bytes | None] | None = None
        self._pjson_from = 0
        # Event times put into `pending` since the last take_changed_times()
        # (None: not tracked -- a small book, or more than INSERTED_MAX --,
        # count every pending event changed): a large book's changelog
        # rewrites only the slots of time whose pending events changed
        # (worker/book_parts.py).
        self._inserted: list[datetime] | None = None

    @classmethod
    def empty(cls, engineer_id: str,
              thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS) -> "EngineerBook":
        if not isinstance(engineer_id, str) or not engineer_id:
            raise BookError("engineer_id must be a non-empty string")
        ledger = Ledger(engineer_id, record=True, thresholds=check_thresholds(thresholds))
        return cls(engineer_id, ledger, None, [], SeenIds())

    # ----------------------------------------------------------------- ingest
    def ingest(self, event: Event, watermark: datetime | None = None, *,
               fingerprint: str | None = None, want_balance: bool = True,
               late_under: tuple[datetime, int] | None = None) -> IngestResult:
        """`fingerprint`: `book_codec.fingerprint_text(event)` if the caller has
        it already (the worker reuses it as the history payload).
        `want_balance=False` leaves IngestResult.balance None (the worker
        encodes balances once per batch instead). `late_under`: (watermark,
        order) of the stream's recorded late decision for this event, when
        replaying them (a rebuild): unless this book is already final that
        far, the event waits among the pending ones at that watermark, and is
        applied late there (events.LateAt); the result says late."""
        if event.engineer_id != self.engineer_id:
            raise BookError(f"event for {event.engineer_id!r} given to book {self.engineer_id!r}")
        check_event(event)
        idd, fpd = id_digest(event.event_id), fingerprint_digest(event, fingerprint)
        at, prev = self.seen.lookup(idd)
        if prev is not None:
            fin = self.advance(watermark)
            reports = fin.reports
            status = DUPLICATE
            if prev != fpd:
                status = CONFLICT
                reports = [Report(self.engineer_id, event.event_id, CONFLICT,
                                  "same event_id as an earlier event with a different payload;"
                                  " not applied")] + reports
            return IngestResult(status, False, self.balance() if want_balance else None,
                                fin.postings, fin.alerts, reports)
        key = event_sort_key(event)
        day = _seen_day(event.type, key[0])
        if day < self.seen_from_day:
            fin = self.advance(watermark)
            report = Report(self.engineer_id, event.event_id, TOO_OLD,
                            f"usage dated before this book's dedupe horizon ({SEEN_USAGE_DAYS} days behind"
                            " the watermark, less for a book near its size limit): its id is no longer"
                            " remembered, so it could be a duplicate; not applied")
            return IngestResult(TOO_OLD, False, self.balance() if want_balance else None,
                                fin.postings, fin.alerts, [report] + fin.reports)
        self.seen.insert(at, idd, fpd, day)
        self.taken += 1
        late = self.watermark is not None and key[0] < self.watermark
        item: Event | LateAt = event
        if late_under is not None and late_under[0] > key[0] \
                and (self.watermark is None or self.watermark <= late_under[0]):
            # The stream's recorded decision, replayed: wait at its watermark,
            # behind any decision already waiting there (also when this book
            # is final through it: those are applied when it passes it).
            item = LateAt(event, *late_under)  # type: ignore[arg-type]
            key, late = item.sort_key(), True
        if late and item is event:
            self.ledger.apply_late(event, self.watermark)  # type: ignore[arg-type]
            self._prov = None
        else:
            pending, pjson, inserted = self.pending, self._pjson, self._inserted
            if inserted is not None:
                inserted.append(key[0])
                if len(inserted) > INSERTED_MAX:
                    self._inserted = None
            if not pending or pending[-1][0] < key:
                i = len(pending)
                if pjson is not None:
                    pjson.append(None)
                pending.append((key, item))
            else:
                i = bisect_right(pending, key, key=_first)
                pending.insert(i, (key, item))
                if pjson is not None:
                    pjson.insert(i, None)
                    if i < self._pjson_from:
                        self._pjson_from = i
            # The cache holds pending[:_prov_n]: an event inserted at or after
            # it leaves that prefix as it was, and balance() extends the prefix
            # when asked. Not applied here: in a backlog most events are
            # finalized by the batch's advance before any balance is taken.
            if i < self._prov_n:  # inside the prefix: the cache no longer holds that order
                self._prov = None
        self._advance(watermark)
        postings, alerts, reports = self.ledger.drain()  # no Finalized in between: once per event
        return _new_result(APPLIED, late, self.balance() if want_balance else None, postings, alerts, reports)

    def note(self, event: Event, *, fingerprint: str | None = None) -> str:
        """An event the ledger does not apply (team moves, privacy choices,
        cash compensation) but whose id the book remembers, so a republished
        one is recognised like any other duplicate: APPLIED the first time,
        then DUPLICATE (same payload) or CONFLICT (different payload). It is
        not counted in `taken` (events_applied counts ledger events)."""
        if event.engineer_id != self.engineer_id:
            raise BookError(f"event for {event.engineer_id!r} given to book {self.engineer_id!r}")
        idd, fpd = id_digest(event.event_id), fingerprint_digest(event, fingerprint)
        prev = self.seen.get(idd)
        if prev is not None:
            return DUPLICATE if prev == fpd else CONFLICT
        self.seen.add(idd, fpd, KEEP_DAY)
        return APPLIED

    def would_apply(self, event: Event) -> bool:
        """Whether `ingest` would take `event` in: False for a remembered id
        (duplicate or conflict) and for usage dated before the dedupe horizon.
        Lets a caller refuse new events (e.g. a book at its size limit) while
        still leaving the classification of those to `ingest`."""
        if self.seen.get(id_digest(event.event_id)) is not None:
            return False
        return _seen_day(event.type, event_sort_key(event)[0]) >= self.seen_from_day

    def advance(self, watermark: datetime | None) -> Finalized:
        """Make everything with event time < watermark final (monotonic: a
        lower watermark than the book's changes nothing). Returns the newly
        final postings, alerts and reports."""
        self._advance(watermark)
        return _new_finalized(*self.ledger.drain())

    def _advance(self, watermark: datetime | None) -> None:
        ledger = self.ledger
        if watermark is not None and (self.watermark is None or watermark > self.watermark):
            pending = self.pending
            n = 0
            for key, e in pending:
                if key[0] >= watermark:
                    break
                ledger.apply(e)
                n += 1
            if n:
                del pending[:n]
                pjson = self._pjson
                if pjson is not None:
                    del pjson[:n]
                    self._pjson_from = max(0, self._pjson_from - n)
            ledger.expire_through(watermark, inclusive=False)
            self.watermark = watermark
            self._forget_old_ids(watermark)
            if self._prov is not None:
                if n <= self._prov_n:
                    # Same item sequence as finalized + the rest of the prefix: stays valid.
                    self._prov_n -= n
                    self._prov.expire_through(watermark, inclusive=False)
                else:  # finalized past the cached prefix
                    self._prov = None

    def _forget_old_ids(self, watermark: datetime) -> None:
        if watermark == END_OF_TIME:
            return  # end of a replay: nothing arrives after it
        day = day_of(watermark)
        day_min = day - SEEN_USAGE_DAYS
        if day_min > self.seen_from_day:
            self.seen.forget_before(day_min)
            self.seen_from_day = day_min
        # Read here, not bound at import: tests lower it.
        self.seen.seal_before(day, SEAL_RECORDS_MIN)

    def finalize_all(self) -> Finalized:
        """End of replay: every pending event and every expiry becomes final."""
        ledger = self.ledger
        for _, e in self.pending:
            ledger.apply(e)
        self.pending = []
        self._pjson, self._pjson_from = None, 0
        ledger.expire_through(None)
        self.watermark = END_OF_TIME
        self._prov = None
        return Finalized(*ledger.drain())

    # --------------------------------------------------------------- balances
    def balance(self, until: datetime | None = None) -> Balance:
        """Provisional balance, exact as of `as_of(until)`: the finalized state
        plus every included pending event and every expiry up to the last one.
        With `until` (the caller's present: its stream time), pending events
        dated after it are left out: an HR event scheduled ahead (next month's
        grant, an offboarding) must not count before its time."""
        pending = self.pending
        n = self.included(until)
        if n == 0:
            return self.ledger.balance()
        prov, k = self._prov, self._prov_n
        if prov is None or k > n:  # (k > n: `until` went back; cannot un-apply)
            prov, k = self.ledger.clone(record=False), 0
        for i in range(k, n):  # extend the cached prefix to the included events
            prov.apply(pending[i][1])
        self._prov, self._prov_n = prov, n
        # Expiries at the last event's instant (order-independent for balances).
        prov.expire_through(pending[n - 1][0][0], inclusive=True)
        return prov.balance()

    def last_included(self, until: datetime | None = None) -> Event | LateAt | None:
        """The latest pending event `balance(until)` includes, if any."""
        n = self.included(until)
        return self.pending[n - 1][1] if n else None

    def next_left_out(self, until: datetime | None) -> datetime | None:
        """Time of the first pending event `balance(until)` leaves out, if any."""
        n = self.included(until)
        return self.pending[n][0][0] if n < len(self.pending) else None

    def as_of(self, until: datetime | None = None) -> datetime | None:
        """The instant `balance(until)` equals `replay(..., as_of=...)` for
        (absent late events): the last included pending event time, else
        watermark - 1us."""
        n = self.included(until)
        if n:
            return self.pending[n - 1][0][0]
        if self.watermark is None:
            # Nothing final yet; with everything pending dated after `until`
            # the (empty) balance is exact as of `until` itself.
            return until if self.pending else None
        if self.watermark == END_OF_TIME:
            return None  # finalize_all: everything, every expiry
        return self.watermark - _US

    def included(self, until: datetime | None) -> int:
        """How many pending events are dated at or before `until` (all: None)."""
        pending = self.pending
        if until is None or not pending or pending[-1][0][0] <= until:
            return len(pending)
        return bisect_right(pending, until, key=_time)

    def final_balance(self) -> Balance:
        """Balance of the finalized part only (== replay as of watermark - 1us)."""
        return self.ledger.balance()

    # ------------------------------------------------------------------ bytes
    def to_bytes(self, bytes_max: int | None = None) -> bytes:
        """With `bytes_max`: a book larger than that first forgets its oldest
        days of usage ids (as if the dedupe horizon were shorter), but never
        the watermark's day or later: usage of those days is still on time or
        nearly, and must not be refused. The result can still exceed
        `bytes_max` when the ids of those days alone do; the caller decides."""
        data = self._pack()
        if bytes_max is not None and len(data) > bytes_max:
            data = self._shrink(data, bytes_max)
        return data

    def _shrink(self, data: bytes, bytes_max: int) -> bytes:
        if self.watermark is None or self.watermark == END_OF_TIME:
            return data
        day_stop = to_us(self.watermark) // _DAY_US  # forget only days before this
        excess, cutoff = len(data) - bytes_max, None
        for day, n in sorted(self.seen.usage_day_counts().items()):
            if day >= day_stop or excess <= 0:
                break
            excess -= n * RECORD
            cutoff = day + 1
        if cutoff is None:
            return data
        self.seen.forget_before(cutoff)
        self.seen_from_day = max(self.seen_from_day, cutoff)
        return self._pack()

    def _pack(self) -> bytes:
        return self._pack_with(self._pending_json() if self.pending else [], self.seen)

    def _pack_with(self, items: list[bytes], seen: SeenIds) -> bytes:
        # Once per changed book and batch. Most books hold a lot or two, a
        # closed grant or none and no pending event: the empty parts skip
        # their comprehension (a function and a frame each on 3.11).
        led = self.ledger
        lots, closed, watermark = led.lots, led.closed, self.watermark
        # STATE_FIELDS order; "p" (the pending events) between head and tail.
        head = [
            self.engineer_id,
            None if watermark is None else (watermark - EPOCH) // _US,
            led.thresholds,  # a tuple: orjson and json write it as the same list
            led.fired,
            int(led.od_flag),
            led.seq,
            led.head,
            _counters(led),
            [_lot_row(lot) for lot in lots] if lots else [],
            sorted(closed) if closed else [],
        ]
        return pack_spliced(head, items, [self.taken, self.seen_from_day], seen)

    def take_changed_times(self) -> list[datetime] | None:
        """Event times of the events put into `pending` since the last call
        (None: not known -- the first call, or too many -- take every
        pending event as changed). Tracking starts with the first call."""
        inserted, self._inserted = self._inserted, []
        return inserted

    def pending_slots(self, width_us: int, origin_us: int,
                      slots: set[int] | None = None) -> dict[int, list[bytes]]:
        """Slots of event time (`width_us` wide, counted from `origin_us`,
        microseconds since the epoch) -> the JSON of the compact forms of
        their pending events, in pending order (the book's packed form holds
        the same items): of `slots` (those without pending events left out),
        or of every slot that has some (None). A bisection per slot, not a
        pass over the events."""
        pending = self.pending
        if not pending:
            return {}
        items = self._pending_json()
        out: dict[int, list[bytes]] = {}
        n = len(pending)
        def first_at(us: int, lo: int) -> int:  # the first pending event at or after `us`
            return n if us > _LAST_US else bisect_left(pending, from_us(us), lo, n, key=_time)

        if slots is not None:
            for slot in slots:
                i = first_at(origin_us + slot * width_us, 0)
                j = first_at(origin_us + (slot + 1) * width_us, i)
                if j > i:
                    out[slot] = items[i:j]
            return out
        i = 0
        while i < n:
            slot = (to_us(pending[i][0][0]) - origin_us) // width_us
            j = first_at(origin_us + (slot + 1) * width_us, i)
            out[slot] = items[i:j]
            i = j
        return out

    def state_bytes(self) -> bytes:
        """The packed book without its pending events and seen ids (a
        version 3 book): what a large book's changelog head holds."""
        return self._pack_with([], SeenIds())

    def _pending_json(self) -> list[bytes]:
        """dumps_compact(event_to_compact(e)) of each pending event, in
        order: those encoded at an earlier pack are kept, the rest encoded now."""
        pending, pjson = self.pending, self._pjson
        if pjson is None:
            pjson = self._pjson = [None] * len(pending)
            self._pjson_from = 0
        elif len(pjson) != len(pending):
            raise BookError(f"pending JSON memo out of step: {len(pjson)} entries for {len(pending)} events")
        for i in range(self._pjson_from, len(pjson)):
            if pjson[i] is None:
                # A copy: orjson's bytes keep the 4 KiB buffer they were
                # written in, and these live as long as the event is pending
                # (x 4 the worker's memory under a live load, measured).
                pjson[i] = memoryview(dumps_compact(event_to_compact(pending[i][1]))).tobytes()
        self._pjson_from = len(pjson)
        return pjson  # type: ignore[return-value]  # every entry is encoded now

    @classmethod
    def from_bytes(cls, data: bytes) -> "EngineerBook":
        state, seen = unpack(data)
        try:
            eng = state["e"]
            led = Ledger(eng, record=True, thresholds=check_thresholds(tuple(state["th"])))
            led.fired, led.od_flag, led.seq, led.head = (
                state["f"], bool(state["o"]), state["s"], state["h"])
            for name, value in zip(_COUNTERS, state["c"], strict=True):
                setattr(led, name, value)
            for gid, amount, remaining, consumed, eff, exp in state["l"]:
                lot = Lot(gid, amount, remaining, consumed, from_us(eff),
                          None if exp is None else from_us(exp))
                led.lots.append(lot)
                led.open[gid] = lot
                led.remaining += remaining
                led.open_amount += amount
                if lot.expires_at is not None:
                    led.expiries.append((lot.expires_at, gid))
            led.lots.sort(key=_lot_key)
            heapify(led.expiries)
            led.closed = set(state["x"])
            pending = [event_from_compact(eng, c) for c in state["p"]]
            watermark = None if state["w"] is None else from_us(state["w"])
            taken = state.get("n", len(seen))  # version 1: nothing was forgotten yet
            seen_from_day = state.get("sd", 0)
            if not isinstance(taken, int) or not isinstance(seen_from_day, int):
                raise TypeError(f"taken {taken!r} / seen_from_day {seen_from_day!r} must be int")
        except (KeyError, TypeError, ValueError, EventError) as exc:
            raise BookError(f"corrupt book state: {exc!r}") from exc
        return cls(eng, led, watermark, [(event_sort_key(e), e) for e in pending], seen, taken, seen_from_day)

    def settle(self) -> bool:
        """Make this live object equal, field for field, to
        `from_bytes(self.to_bytes())`, so a caller may keep it instead of
        deserializing: drops the expiry-heap entries of closed grants,
        recomputes the open totals from the lots. The provisional cache and
        the pending events' JSON are kept: both are derived from the state
        the bytes hold (finalized ledger + pending), and rebuilding them each
        batch re-applied every pending event of every touched book (under a
        live load, hours of usage). False (and nothing changed) while outputs
        are undrained: those bytes do not hold them, so the object must not
        stand in for them."""
        led = self.ledger
        if led.postings or led.alerts or led.reports:
            return False
        lots = led.lots
        if len(lots) == 1:  # the usual book: what the general case computes, without the loops
            lot = lots[0]
            led.expiries = [] if lot.expires_at is None else [(lot.expires_at, lot.grant_id)]
            led.open = {lot.grant_id: lot}
            led.remaining, led.open_amount = lot.remaining, lot.amount
        else:
            # from_bytes: expiries appended in lot order, then heapified.
            expiries = [(lot.expires_at, lot.grant_id) for lot in lots if lot.expires_at is not None]
            heapify(expiries)
            led.expiries = expiries
            led.open = {lot.grant_id: lot for lot in lots}
            led.remaining = sum(lot.remaining for lot in lots)
            led.open_amount = sum(lot.amount for lot in lots)
        return True

    def __repr__(self) -> str:
        return (f"EngineerBook({self.engineer_id!r}, watermark={self.watermark}, "
                f"pending={len(self.pending)}, seen={len(self.seen)}, taken={self.taken})")


def _first(item: tuple[PendingKey, Event | LateAt]) -> PendingKey:
    return item[0]


def _time(item: tuple[PendingKey, Event | LateAt]) -> datetime:
    return item[0][0]


def _lot_key(lot: Lot) -> tuple[Any, ...]:
    return lot.key


def _lot_row(lot: Lot) -> list[Any]:
    """A lot as the packed book holds it (from_bytes reads it back)."""
    expires_at = lot.expires_at
    return [lot.grant_id, lot.amount, lot.remaining, lot.consumed, (lot.effective_at - EPOCH) // _US,
            None if expires_at is None else (expires_at - EPOCH) // _US]


def _seen_day(event_type: str, at: datetime) -> int:
    """The day a seen-id record is filed under: usage by its event day (so it
    can be forgotten), HR events under KEEP_DAY (kept for good)."""
    if event_type != "usage":
        return KEEP_DAY
    day = day_of(at)
    return 0 if day < 0 else day if day < KEEP_DAY - 1 else KEEP_DAY - 1
