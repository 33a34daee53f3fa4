"""One batch of source messages -> new books, history rows, and outputs.

This is the worker's whole decision logic, kept free of Faust so it reads top
to bottom: decode (or dead-letter), route HR events, apply ledger events to the
engineer's book, collect postings, balances, alerts; then sweep the quiet books
of partitions whose watermark moved, so their expiries and postings become
final too. The Faust agent only moves bytes in and out (see `app.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from heapq import heapify, heappop
from typing import Any, Callable, Collection, Iterable

from compstream.codec import SCHEMAS, DecodeError, decode_event, encode_record
from compstream.config import BOOK_BYTES_MAX, USAGE_AHEAD_S_MAX
from compstream.domain.alerts import Alert
from compstream.domain.balance import Balance, Report
from compstream.domain.book import (
    APPLIED,
    CONFLICT,
    DUPLICATE,
    END_OF_TIME,
    TOO_OLD,
    EngineerBook,
    Finalized,
    IngestResult,
)
from compstream.domain.book_codec import fingerprint_text
from compstream.domain.events import LEDGER_EVENT_TYPES, Event, EventError, format_time
from compstream.history.rows import (
    BATCH_ROWS_MAX,
    DeadLetterRow,
    EventRow,
    HistoryBatch,
    PostingRow,
    WatermarkRow,
    history_batches,
)
from compstream.worker import book_parts
from compstream.worker.book_cache import BookCache
from compstream.worker.book_parts import BookParts
from compstream.worker.book_room import REFUSE, BookRoom
from compstream.worker.due_index import DueIndex
from compstream.worker.messages import Coord, SourceMessage, partition_of
from compstream.worker.recorded_late import RecordedDecisions

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Faust's batch is bounded by the agent (`noack_take`); this is a second guard.
BATCH_MESSAGES_MAX = 150_000
# A sweep advances the books that have something due before the watermark
# (each book is due about once per event it holds, so this is work the ledger
# owes anyway). Bound the rows one sweep adds so a batch usually fits one
# history batch (beyond it, the rows go out in pieces: rows.history_batches);
# a sweep cut short resumes with the next batch.
SWEEP_ROWS_MAX = 20_000
# BOOK_BYTES_MAX (config): past it a book forgets its oldest usage ids early
# (EngineerBook.to_bytes); usage that still does not fit is refused (BOOK_FULL).
# A book's changelog records stay under the broker's 1 MiB whatever this is
# (worker/book_parts.py); the bound is memory.
BOOK_BYTES_LIMITS = (1024, 64 * 1024 * 1024)
# Book statuses whose message becomes a dead letter (stage = status).
DEAD_LETTER_STATUSES = (CONFLICT, TOO_OLD)
_US = timedelta(microseconds=1)
# Stage of usage refused because its engineer's book is at book_bytes_max.
BOOK_FULL = "book_full"
# Stage of usage dated further ahead of its Kafka record's timestamp than
# usage_ahead_s_max: usage moves its partition's stream time, so one event
# with a wrong date (a clock, time zone or typing error) would finalize every
# engineer of the partition up to that date and expire their grants.
FUTURE = "future"
USAGE_AHEAD_S_LIMITS = (0, 366 * 86400)
# Stage of an event the ledger raised on (a bug, or a corrupt book).
LEDGER_FAILED = "ledger"
# Dead letters of usage that moved its partition's stream time before it was
# refused (a rebuild counts them: worker/recorded_late.py).
STREAM_TIME_STAGES = (CONFLICT, TOO_OLD, BOOK_FULL, LEDGER_FAILED)


@dataclass
class BatchResult:
    # Usually one; more when the rows exceed the history batch bound (a
    # pathological batch must be written in pieces, not crash-loop the worker).
    history: tuple[HistoryBatch, ...]
    books: dict[str, tuple[bytes, int]]  # engineer -> (serialized book, partition)
    balances: list[tuple[str, bytes]]  # (engineer, encoded BalanceUpdate)
    alerts: list[tuple[str, bytes]]
    dead_letters: list[tuple[bytes | None, bytes]]  # (key, encoded DeadLetter)
    hr_events: list[tuple[SourceMessage, Event]] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    swept: int = 0  # stored books the sweep advanced
    swept_touched: int = 0  # books of this batch the sweep advanced past their own events
    # (topic, partition, offset) of messages the ledger did not apply: event-id
    # duplicates, conflicts, dead letters. Downstream stages (leaderboards)
    # skip them, so a republished event is counted nowhere twice.
    not_applied: frozenset[Coord] = frozenset()
    # (topic, partition, offset) -> the decoded event, for every message that
    # decoded and was on its engineer's key: the leaderboard stage reuses
    # them instead of decoding the batch a second time.
    decoded: dict[Coord, Event] = field(default_factory=dict)
    # engineer -> (its sealed days, those changed since its last write), for
    # the books of `books` with sealed days (worker/book_changelog.py).
    sealed: dict[str, tuple[frozenset[int], set[int]]] = field(default_factory=dict)
    # engineer -> the parts of a large book (worker/book_parts.py), for the
    # books of `books` of PARTS_BYTES_MIN or more.
    parts: dict[str, BookParts] = field(default_factory=dict)


@dataclass
class _Batch:
    """Mutable collector for one batch."""

    books: dict[str, EngineerBook] = field(default_factory=dict)
    book_partition: dict[str, int] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    events: list[EventRow] = field(default_factory=list)
    postings: list[PostingRow] = field(default_factory=list)
    dead_rows: list[DeadLetterRow] = field(default_factory=list)
    dead_out: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    alerts: list[tuple[str, bytes]] = field(default_factory=list)
    hr_events: list[tuple[SourceMessage, Event]] = field(default_factory=list)
    not_applied: set[Coord] = field(default_factory=set)
    decoded: dict[Coord, Event] = field(default_factory=dict)
    room: BookRoom | None = None  # set by the processor (it knows the limit)
    reported: set[tuple[str, str]] = field(default_factory=set)  # (stage, engineer) alerted: once a batch
    start_marks: dict[int, datetime] = field(default_factory=dict)  # partition -> watermark at batch start
    # Partitions a rebuild still reads records of that the stream judged: their
    # books forget no ids for room (worker/recorded_late.py, `through`).
    judging: frozenset[int] = frozenset()
    applied: int = 0
    duplicates: int = 0
    swept: int = 0
    swept_touched: int = 0

    def dead(self, msg: SourceMessage, stage: str, reason: str) -> None:
        self.not_applied.add((msg.topic, msg.partition, msg.offset))
        self.dead_rows.append(DeadLetterRow(
            msg.topic, msg.partition, msg.offset, bytes(msg.value), reason, stage, msg.timestamp))
        self.dead_out.append((msg.key, encode_record("DeadLetter", {
            "source_topic": msg.topic, "source_partition": msg.partition,
            "source_offset": msg.offset, "key": msg.key, "raw": bytes(msg.value),
            "stage": stage, "reason": reason, "received_at": msg.timestamp,
        })))

    def live_room(self) -> BookRoom:
        """The room, which exists only while `process` runs."""
        if self.room is None:
            raise RuntimeError("batch has no BookRoom: messages are applied only inside process()")
        return self.room

    def advanced(self, engineer: str, result: Finalized, when: datetime) -> None:
        """A book advanced outside ingest (BookRoom measuring it)."""
        self.outcome(engineer, result, when)
        self.changed.add(engineer)

    def outcome(self, engineer: str, result: IngestResult | Finalized, when: datetime) -> None:
        """Collect what a book handed out (postings, alerts, reports)."""
        if result.postings:  # often none (a book advanced with nothing due): no generator then
            self.postings.extend(PostingRow.from_posting(p) for p in result.postings)
        for alert in result.alerts:
            self.alerts.append((engineer, encode_alert(alert)))
        for report in result.reports:
            if report.code not in DEAD_LETTER_STATUSES:  # their messages become dead letters
                self.alerts.append((engineer, encode_report(report, when)))


class LedgerProcessor:
    """Holds per-partition stream time (for watermarks) across batches."""

    def __init__(self, lateness_s: int, load_book: Callable[[str], bytes | None], partitions: int,
                 book_bytes_max: int = BOOK_BYTES_MAX, usage_ahead_s_max: int = USAGE_AHEAD_S_MAX,
                 book_cache: BookCache | None = None, recorded: RecordedDecisions | None = None):
        if lateness_s < 0:
            raise ValueError("lateness_s must be >= 0")
        low, high = USAGE_AHEAD_S_LIMITS
        if not low <= usage_ahead_s_max <= high:
            raise ValueError(f"usage_ahead_s_max must be within {low}..{high} s, got {usage_ahead_s_max}")
        self.usage_ahead_max = timedelta(seconds=usage_ahead_s_max)
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        low, high = BOOK_BYTES_LIMITS
        if not low <= book_bytes_max <= high:
            raise ValueError(f"book_bytes_max must be within {low}..{high} bytes, got {book_bytes_max}")
        self.lateness = timedelta(seconds=lateness_s)
        # A rebuild takes the stream's decisions again (worker/recorded_late.py):
        # its late ones, (engineer, event id) -> (watermark, order), and the
        # books to hold back until an event is read, engineer -> a heap of
        # (bound, source topic, partition, offset). Also the records it
        # refused (refused again) and how far it had judged (below, what it
        # did not refuse it took: never refused for room). All empty otherwise.
        self.recorded_late = recorded.late if recorded is not None else {}
        self.refused = recorded.refused if recorded is not None else {}
        self.judged_to = recorded.through if recorded is not None else {}
        # A batch read again after a crash (core/cut.py): what its first
        # attempt refused for its books' state, (stage, reason), refused again.
        self.refused_before: dict[tuple[str, int, int], tuple[str, str]] = {}
        # Source partition -> the end of a batch read again whose first
        # attempt began its state wave: a book there may hold the batch
        # already, and an event of it the book calls too old was applied then
        # (its day's ids forgotten since).
        self.state_begun: dict[tuple[str, int], int] = {}
        self.expected: dict[str, list[tuple[datetime, str, int, int]]] = {}
        for engineer, places in (recorded.expected if recorded is not None else {}).items():
            heap = [(bound, t, p, o) for t, p, o, bound in places]
            heapify(heap)
            self.expected[engineer] = heap
        # Source partition -> the next offset to apply (what the expected
        # places are checked against): the core's positions, then each message.
        self.read_to: dict[tuple[str, int], int] = {}
        self.load_book = load_book
        self.partitions = partitions
        self.stream_time: dict[int, datetime] = {}
        # Per (topic, partition): the source topics are consumed at their own
        # pace, so a topic still catching up must hold the watermark back.
        self.topic_time: dict[tuple[str, int], datetime] = {}
        self.lagging: frozenset[tuple[str, int]] = frozenset()
        # Which stored books the sweep must advance (unknown ones count as due).
        self.due = DueIndex()
        self.swept_watermark: dict[int, datetime] = {}
        # partition -> the last final_through written to history (WatermarkRow)
        self.recorded_watermark: dict[int, datetime] = {}
        self.partition_cache: dict[str, int] = {}
        # Live books between batches, reused only while the table holds the
        # very bytes they were serialized to (see book_cache).
        self.book_cache = BookCache() if book_cache is None else book_cache
        self.history_rows_max = BATCH_ROWS_MAX
        self.book_bytes_max = book_bytes_max

    def advance_stream_time(self, partition: int, until: datetime) -> bool:
        """The idleness rule (worker/core): a partition whose inputs are all
        read to their end and quiet moves its stream time to `until` (the
        engine's wall clock), so its watermark passes expiries and pending
        events without new usage. Only forward; True if it moved."""
        if until <= self.stream_time.get(partition, EPOCH):
            return False
        self.stream_time[partition] = until
        return True

    def restore_stream_time(self, partition: int, stored: datetime) -> None:
        """Stream time as stored with the books (after a restart or a
        rebalance); it only moves forward."""
        if stored > self.stream_time.get(partition, EPOCH):
            self.stream_time[partition] = stored

    def watermark(self, partition: int) -> datetime:
        """Max usage event time seen on the partition, held back by any source
        topic of that partition that still has a backlog, minus lateness.
        Without it, a fast usage backlog would finalize time before the grants
        of that time were read, and those grants would count as late."""
        time = self.stream_time.get(partition, EPOCH)
        for topic, p in self.lagging:
            if p == partition:
                time = min(time, self.topic_time.get((topic, p), EPOCH))
        return time - self.lateness

    def _book(self, batch: _Batch, engineer: str, partition: int) -> EngineerBook:
        book = batch.books.get(engineer)
        if book is None:
            data = self.load_book(engineer)
            book = self.book_cache.take(engineer, data)
            if book is None:
                book = EngineerBook.from_bytes(data) if data else EngineerBook.empty(engineer)
            batch.books[engineer] = book
            batch.book_partition[engineer] = partition
            batch.live_room().loaded(engineer, len(data) if data else 0)
        return book

    def process(self, messages: list[SourceMessage], keys: Callable[[], Collection[str]] | None = None,
                sweep: bool = True, lagging: Iterable[tuple[str, int]] | None = None,
                lagging_after: Iterable[tuple[str, int]] | None = None,
                also_sweep: Iterable[int] = ()) -> BatchResult:
        """Apply a batch. With `keys` (all engineers with a stored book) and
        `sweep`, also advance the quiet books (those with something due before
        the watermark) of this batch's partitions whose watermark moved.
        `lagging`: source partitions with a backlog before this batch (they
        hold the watermark back while its events are applied); `lagging_after`:
        those still behind once it is applied, for the sweep: a backlog the
        batch finished no longer holds it back (else that sweep would wait
        for a next batch that may not come). `also_sweep`: partitions to sweep
        although no message of theirs is in the batch (their stream time was
        advanced by the idleness rule)."""
        if len(messages) > BATCH_MESSAGES_MAX:
            raise ValueError(f"batch of {len(messages)} exceeds {BATCH_MESSAGES_MAX}")
        if lagging is not None:
            self.lagging = frozenset(lagging)
        batch = _Batch()
        batch.room = BookRoom(self.book_bytes_max, batch.advanced)
        if self.judged_to:
            read_to = self.read_to
            batch.judging = frozenset(tp[1] for tp, o in self.judged_to.items() if read_to.get(tp, 0) < o)
        # Before any message moves stream time: the watermark the batch starts with.
        batch.start_marks = {p: self.watermark(p) for p in {m.partition for m in messages}}
        try:
            if self.expected or self.judged_to:
                read_to = self.read_to
                for msg in messages:
                    self._apply(batch, msg)
                    read_to[(msg.topic, msg.partition)] = msg.offset + 1
            else:
                for msg in messages:
                    self._apply(batch, msg)
            if lagging_after is not None:
                self.lagging = frozenset(lagging_after)
            self._advance_touched(batch)
            if sweep and keys is not None:
                moved = {p for p in {m.partition for m in messages} | set(also_sweep)
                         if self.watermark(p) > self.swept_watermark.get(p, EPOCH)}
                if moved:
                    self._sweep(batch, moved, keys)
        finally:
            # The room holds batch.advanced, a reference back to the batch: a
            # cycle that would leave the whole batch (books, rows, events) to
            # the cyclic GC, freed only at a full collection.
            batch.room = None
        return self._result(batch)

    def _apply(self, batch: _Batch, msg: SourceMessage) -> None:
        try:
            event = decode_event(msg.value)
        except DecodeError as exc:
            return batch.dead(msg, f"decode:{exc.stage}", exc.reason)
        except EventError as exc:
            return batch.dead(msg, "validate", str(exc))
        if msg.key is None or msg.key.decode("utf-8", "replace") != event.engineer_id:
            # A wrong key puts the engineer on the wrong partition and book.
            return batch.dead(msg, "route", f"message key {msg.key!r} != engineer_id {event.engineer_id!r}")
        at, partition = event.event_time, msg.partition  # a property: read once
        # (A record without a timestamp has the epoch: no bound to check against.)
        if event.type == "usage" and at - msg.timestamp > self.usage_ahead_max and msg.timestamp > EPOCH:
            return self._refuse_future(batch, msg, event)
        batch.decoded[(msg.topic, msg.partition, msg.offset)] = event
        # Only provider usage moves stream time: HR events are often dated
        # ahead (next month's grant), and would make today's usage late.
        if event.type == "usage" and at > self.stream_time.get(partition, EPOCH):
            self.stream_time[partition] = at
        tp = (msg.topic, partition)
        if at > self.topic_time.get(tp, EPOCH):
            self.topic_time[tp] = at
        # Canonical JSON once: the book's fingerprint and the history payload.
        text = fingerprint_text(event)
        if event.type not in LEDGER_EVENT_TYPES:
            # Remembered by the engineer's book like ledger events, so a
            # republished one is one row in history and counted nowhere twice.
            noted = self._book(batch, event.engineer_id, msg.partition)
            status = noted.note(event, fingerprint=text)
            if status == DUPLICATE:
                batch.duplicates += 1
                batch.not_applied.add((msg.topic, msg.partition, msg.offset))
                return None
            if status == CONFLICT:
                return batch.dead(msg, CONFLICT, f"event_id {event.event_id!r}: same event_id as an earlier "
                                                 "event with a different payload; not applied")
            batch.hr_events.append((msg, event))
            batch.events.append(EventRow.from_event(
                event, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                ingest_time=msg.timestamp, payload=text, applied_seq=noted.taken))
            return None
        engineer = event.engineer_id
        try:
            room = batch.live_room()
            book = self._book(batch, engineer, partition)
            # The watermark as the batch found it: events of one batch are
            # applied order-independently (pending, sorted in their books), so
            # a backlog read in one batch -- an export grouped by engineer, a
            # topic that filled while the worker was down -- is not judged
            # late against events read just before it. The sweep at the end
            # of the batch advances every touched book to the new watermark.
            # A book near its byte limit is the exception: its room is measured
            # event by event, which needs the live watermark (to forget ids
            # and finalize pending events as far as the batch has got).
            late_under = self.recorded_late.get((engineer, event.event_id)) if self.recorded_late else None
            take = late_under is not None  # the stream applied it late: a rebuild takes it, room or not
            again = self.refused_before.get((msg.topic, partition, msg.offset)) if self.refused_before else None
            if self.judged_to:
                stage = self.refused.get((msg.topic, partition, msg.offset))
                if stage is not None:
                    return batch.dead(msg, stage, f"event_id {event.event_id!r}: refused by the stream as {stage} "
                                                  "before this rebuild (recorded-late.json), so refused again")
                take = take or msg.offset < self.judged_to.get((msg.topic, partition), 0)
            watermark = batch.start_marks[partition]
            if room.is_tight(engineer) or room.would_be_tight(book, event, text, late_under):
                watermark = self.watermark(partition)
            if self.expected:
                watermark = self.capped(engineer, watermark)
            admitted = room.admit(book, event, text, watermark, late_under, take)
            if again is not None:
                return self._refuse_again(batch, msg, book, event, watermark, admitted, again)
            if admitted is REFUSE:
                return self._refuse_full(batch, msg, book, event)
            applied_under = book.watermark  # what the late verdict is taken against
            # No per-event balance: _result encodes one per changed book.
            result = book.ingest(event, watermark, fingerprint=text, want_balance=False, late_under=late_under)
            if late_under is not None and result.late and (applied_under is None or applied_under <= late_under[0]):
                applied_under = late_under[0]  # waits in the book to be applied late there (events.LateAt)
            room.taken(engineer, admitted, result.status == APPLIED)
        except Exception as exc:  # a bug or corrupt book must not stop the stream:
            log.exception("ledger failed on %s:%s:%s", msg.topic, msg.partition, msg.offset)
            return batch.dead(msg, LEDGER_FAILED, f"{type(exc).__name__}: {exc}")  # kept for redrive
        batch.outcome(engineer, result, at)
        if result.status == TOO_OLD and msg.offset < self.state_begun.get((msg.topic, partition), 0):
            batch.duplicates += 1  # applied by the first attempt (core/cut.py)
            batch.not_applied.add((msg.topic, msg.partition, msg.offset))
            return None
        if result.status in DEAD_LETTER_STATUSES:  # conflict, too_old: not applied, kept for a decision
            detail = "; ".join(r.detail for r in result.reports if r.code == result.status)
            return batch.dead(msg, result.status, f"event_id {event.event_id!r}: {detail}")
        if result.status == "duplicate":
            batch.duplicates += 1
            batch.not_applied.add((msg.topic, msg.partition, msg.offset))
            return None
        batch.applied += 1
        batch.changed.add(engineer)
        batch.events.append(EventRow.from_event(
            event, topic=msg.topic, partition=msg.partition, offset=msg.offset,
            ingest_time=msg.timestamp, late=result.late, payload=text, applied_watermark=applied_under,
            applied_seq=book.taken))
        return None

    def _refuse_again(self, batch: _Batch, msg: SourceMessage, book: EngineerBook, event: Event,
                      watermark: datetime, admitted: tuple[int, int] | None, again: tuple[str, str]) -> None:
        """A record the first attempt of a batch read again refused: the same
        dead letter and history row, and what that attempt did to the book on
        the way -- the room's measure and advance (admit, done), a refusal's
        report, or ingest's advance for one too old or in conflict. A late
        event after it is then posted where the first attempt posted it,
        before or after the postings that advance finalized."""
        if admitted is REFUSE:
            if again[0] == BOOK_FULL:
                return self._refuse_full(batch, msg, book, event, again)
            return batch.dead(msg, *again)  # a book past the batch refuses for room one refused otherwise
        batch.outcome(book.engineer_id, book.advance(watermark), event.event_time)
        batch.live_room().taken(book.engineer_id, admitted, False)
        return batch.dead(msg, *again)

    def _refuse_full(self, batch: _Batch, msg: SourceMessage, book: EngineerBook, event: Event,
                     recorded: tuple[str, str] | None = None) -> None:
        """Usage its engineer's book has no room for: a dead letter (raw bytes
        kept for a redrive once there is room) and, once per book and batch, a
        report on the alerts topic (downstream must know usage went uncounted).
        `recorded`: the first attempt's (stage, reason) of a batch read again."""
        detail = (f"{book.engineer_id}'s book is at its {self.book_bytes_max}-byte limit "
                  f"({len(book.seen)} event ids remembered, {len(book.pending)} events pending within "
                  f"the lateness window): not applied; redrive it once the book has room")
        if (BOOK_FULL, book.engineer_id) not in batch.reported:
            batch.reported.add((BOOK_FULL, book.engineer_id))
            batch.alerts.append((book.engineer_id, encode_report(
                Report(book.engineer_id, event.event_id, BOOK_FULL, detail), event.event_time)))
        if recorded is not None:
            return batch.dead(msg, *recorded)
        return batch.dead(msg, BOOK_FULL, f"event_id {event.event_id!r}: {detail}")

    def _refuse_future(self, batch: _Batch, msg: SourceMessage, event: Event) -> None:
        """Usage dated too far ahead of its record: a dead letter (raw bytes
        kept) and, once per engineer and batch, a report on the alerts topic.
        Deterministic: both times are in the record, so a rebuild from the
        source topics refuses the same records."""
        ahead_s = (event.event_time - msg.timestamp).total_seconds()
        ahead = (f"{ahead_s / 86400:,.1f} days" if ahead_s >= 2 * 86400 else
                 f"{ahead_s / 3600:,.1f} h" if ahead_s >= 2 * 3600 else f"{ahead_s:,.0f} s")
        detail = (f"usage dated {format_time(event.event_time)}, {ahead} ahead of its Kafka record's "
                  f"timestamp {format_time(msg.timestamp)} (more than the {self.usage_ahead_max.total_seconds():.0f} s "
                  "COMPSTREAM_USAGE_AHEAD_S_MAX allows): a wrong date would move the partition's stream time and "
                  "finalize every engineer on it; not applied. Publish it again with its true time, or redrive "
                  "it once its time has come")
        if (FUTURE, event.engineer_id) not in batch.reported:
            batch.reported.add((FUTURE, event.engineer_id))
            batch.alerts.append((event.engineer_id, encode_report(
                Report(event.engineer_id, event.event_id, FUTURE, detail), event.event_time)))
        batch.dead(msg, FUTURE, f"event_id {event.event_id!r}: {detail}")

    def _advance_touched(self, batch: _Batch) -> None:
        """Every book the batch touched, to the watermark the batch ends with:
        ingest used the watermark the batch started with, and a book may be
        new (not stored yet, so no sweep would find it)."""
        marks: dict[int, datetime] = {}
        for engineer in list(batch.books):
            p = batch.book_partition[engineer]
            watermark = marks.get(p)
            if watermark is None:
                watermark = marks[p] = self.watermark(p)
            book = batch.books[engineer]
            to = self.capped(engineer, watermark) if self.expected else watermark
            if book.watermark is None or to > book.watermark:
                batch.outcome(engineer, book.advance(to), to)
                batch.changed.add(engineer)
                batch.swept_touched += 1

    def _sweep(self, batch: _Batch, partitions: set[int], keys: Callable[[], Collection[str]]) -> None:
        # Watermarks and stream times do not move during the sweep (only
        # _apply moves them), so they are looked up once.
        marks = {p: self.watermark(p) for p in partitions}
        cache, index = self.partition_cache, self.due
        found: dict[int, set[str]] = {}
        for engineer in index.unknown(keys()):  # restored books: due until computed
            p = cache.get(engineer)
            if p is None:
                p = cache[engineer] = partition_of(engineer, self.partitions)
            if p in marks:
                found.setdefault(p, set()).add(engineer)
        for p, watermark in marks.items():
            found.setdefault(p, set()).update(index.take(p, watermark, self.stream_time.get(p, EPOCH)))
        # Books this batch touched were advanced to the batch's final
        # watermark already (_advance_touched); their times are recomputed.
        touched = batch.books
        for p in sorted(found):  # one order whatever the heaps' history: a re-read batch writes the same
            due = sorted(found[p])
            for i, engineer in enumerate(due):
                if len(batch.postings) + len(batch.events) >= SWEEP_ROWS_MAX:
                    for q in found:
                        index.put_back(q, due[i:] if q == p else found[q] if q > p else ())
                    return
                if engineer in touched:
                    continue
                book = self._book(batch, engineer, p)
                to = self.capped(engineer, marks[p]) if self.expected else marks[p]
                batch.outcome(engineer, book.advance(to), to)
                batch.changed.add(engineer)
                batch.swept += 1
        # Only a complete pass marks the partitions swept.
        self.swept_watermark.update(marks)

    def capped(self, engineer: str, watermark: datetime) -> datetime:
        """How far the book may be final: `watermark`, held back by a rebuild
        before an event the stream took otherwise than this watermark would
        (worker/recorded_late.py) while that event is not read yet."""
        heap = self.expected.get(engineer)
        if heap is None:
            return watermark
        read_to = self.read_to
        while heap:
            bound, topic, p, offset = heap[0]
            if offset < read_to.get((topic, p), 0):
                heappop(heap)  # read (or gone from the topic): no longer holds the book
                continue
            return bound if bound < watermark else watermark
        del self.expected[engineer]
        return watermark

    def _holds(self) -> dict[int, datetime]:
        """Per partition, the earliest time a rebuild holds one of its books
        back to (capped): the finality a WatermarkRow may claim there."""
        out: dict[int, datetime] = {}
        cache = self.partition_cache
        for engineer in list(self.expected):
            bound = self.capped(engineer, END_OF_TIME)
            if bound == END_OF_TIME:
                continue
            p = cache.get(engineer)
            if p is None:
                p = cache[engineer] = partition_of(engineer, self.partitions)
            if bound < out.get(p, END_OF_TIME):
                out[p] = bound
        return out

    def forget_recorded(self) -> None:
        """A rebuild's decisions are all taken (read and committed past every
        record they speak of): let them go."""
        self.recorded_late, self.refused, self.judged_to = {}, {}, {}
        self.expected.clear()

    def forget_books(self, engineers: Iterable[str]) -> None:
        """Books restored or handed to another worker: their times are
        unknown until a sweep computes them (another worker may have changed them)."""
        self.due.forget(engineers)

    def _result(self, batch: _Batch) -> BatchResult:
        balances: list[tuple[str, bytes]] = []
        books_out: dict[str, tuple[bytes, int]] = {}
        sealed: dict[str, tuple[frozenset[int], set[int]]] = {}
        parts: dict[str, BookParts] = {}
        for engineer, book in batch.books.items():
            partition = batch.book_partition[engineer]
            # A rebuild forgets no ids for room while it reads what the stream
            # judged: remembering at least what the stream remembered, it finds
            # the same duplicates and never refuses as too old what the stream
            # applied (the stream's refusals it repeats from its record).
            judging = partition in batch.judging
            data = book.to_bytes(None if judging else self.book_bytes_max)
            if len(data) > self.book_bytes_max and not judging:  # only HR events (never refused) get here: say whose
                log.error("book of %s is %d bytes, over its %d-byte budget with no usage ids left to "
                          "forget before its watermark's day (%d ids kept)", engineer, len(data),
                          self.book_bytes_max, len(book.seen))
            books_out[engineer] = (data, partition)
            seen = book.seen
            changed_days = seen.take_changed_days() if seen.sealed_days else set()
            if seen.sealed_days:
                sealed[engineer] = (frozenset(seen.sealed_days), changed_days)
            if len(data) >= book_parts.PARTS_BYTES_MIN:  # (only these track their changes)
                parts[engineer] = BookParts(book, len(data), book.state_bytes(), self.lateness // _US, changed_days,
                                            book.take_changed_times(), seen.take_changed_buckets())
            if engineer in batch.changed:
                until = self.stream_time.get(partition)
                watermark = self.watermark(partition)
                if self.expected:
                    watermark = self.capped(engineer, watermark)
                balances.append((engineer, encode_balance(engineer, book, watermark, until)))
                self.due.update(engineer, partition, _due(book), book.next_left_out(until))
            else:
                self.due.update(engineer, partition, _due(book))
            if book.settle():  # now equal to from_bytes(data): reusable next batch
                self.book_cache.put(engineer, data, book)
        # Finality, as written: a partition whose sweep completed up to its
        # watermark has every posting before it in this batch's history.
        marks = []
        holds = self._holds() if self.expected else {}
        for p, swept in sorted(self.swept_watermark.items()):
            if p in holds and holds[p] < swept:
                swept = holds[p]
            if swept > self.recorded_watermark.get(p, EPOCH) and p in self.stream_time:
                marks.append(WatermarkRow(p, swept, self.stream_time[p]))
                self.recorded_watermark[p] = swept
        return BatchResult(
            history=history_batches(batch.events, batch.postings, batch.dead_rows, self.history_rows_max,
                                    watermarks=marks),
            books=books_out, balances=balances, alerts=batch.alerts, dead_letters=batch.dead_out,
            hr_events=batch.hr_events, applied=batch.applied, duplicates=batch.duplicates,
            swept=batch.swept, swept_touched=batch.swept_touched, not_applied=frozenset(batch.not_applied),
            decoded=batch.decoded, sealed=sealed, parts=parts,
        )


def _due(book: EngineerBook) -> datetime | None:
    candidates = []
    if book.pending:
        candidates.append(book.pending[0][0][0])
    if book.ledger.expiries:  # a heap; may hold closed lots: then a harmless extra sweep
        candidates.append(book.ledger.expiries[0][0])
    return min(candidates) if candidates else None


# Every Balance field the BalanceUpdate schema carries.
BALANCE_FIELDS = tuple(
    f["name"] for f in SCHEMAS["BalanceUpdate"].parsed["fields"] if f["name"] in Balance.__dataclass_fields__
)
# The rest of a BalanceUpdate, encode_balance's arguments.
_BALANCE_EXTRA = ("engineer_id", "cause_event_id", "as_of", "watermark", "events_applied")
if {f["name"] for f in SCHEMAS["BalanceUpdate"].parsed["fields"]} != {*BALANCE_FIELDS, *_BALANCE_EXTRA}:
    raise ImportError("BalanceUpdate's fields are not the Balance fields and " + ", ".join(_BALANCE_EXTRA))


def _balance_record_builder() -> Callable[..., dict[str, Any]]:
    """`record(balance, engineer_id, cause_event_id, as_of, watermark,
    events_applied)`: the BalanceUpdate dict in one dict display, generated
    from the fields (once per changed book: no zip, no dict from pairs, no update)."""
    items = [f"{name!r}: b.{name}" for name in BALANCE_FIELDS] + [f"{name!r}: {name}" for name in _BALANCE_EXTRA]
    src = f"def record(b, {', '.join(_BALANCE_EXTRA)}):\n    return {{{', '.join(items)}}}\n"
    namespace: dict[str, Any] = {}
    exec(src, namespace)  # noqa: S102 - generated from the schema's field names above
    record: Callable[..., dict[str, Any]] = namespace["record"]
    return record


_balance_record = _balance_record_builder()


def encode_balance(engineer: str, book: EngineerBook, watermark: datetime,
                   until: datetime | None = None) -> bytes:
    """The balance as of `until` (the partition's stream time): pending
    events dated after it (scheduled HR events) are not counted yet.
    `events_applied` counts every event taken in, those included."""
    cause = book.last_included(until)
    return encode_record("BalanceUpdate", _balance_record(
        book.balance(until), engineer, cause.event_id if cause is not None else "", book.as_of(until),
        watermark if watermark > EPOCH else None, book.taken))


def encode_alert(alert: Alert) -> bytes:
    detail = (f"used {alert.used_nanos} of {alert.open_amount_nanos} nanos open; "
              f"overdraft {alert.overdraft_nanos}; available {alert.available_nanos}")
    return encode_record("Alert", {
        "engineer_id": alert.engineer_id, "kind": alert.kind, "threshold_pct": alert.threshold_pct,
        "cause_event_id": alert.cause_event_id, "event_time": alert.event_time, "detail": detail,
    })


def encode_report(report: Report, when: datetime) -> bytes:
    """Ledger reports (revoke of an unknown grant, late event, …) ride the alerts
    topic so they are visible downstream; they are not balance changes."""
    return encode_record("Alert", {
        "engineer_id": report.engineer_id, "kind": f"report:{report.code}", "threshold_pct": None,
        "cause_event_id": report.event_id, "event_time": when,
        "detail": report.detail or None,
    })
