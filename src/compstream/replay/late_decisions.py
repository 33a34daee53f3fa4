"""The worker's late decisions, read back, and balances replayed by them.

An event older than its book's watermark when it arrived is applied on top of
the final state (domain/book.py): where it crossed an expiry or a revocation
the live balance is not what a sort by event time gives. Which events were
late depends on what the stream had read when they arrived, so the source
topics cannot say; the worker records it in its history rows (`late`,
`applied_watermark`, `applied_seq`), on the history topic and in the store.
Given those decisions the balance follows from the events
(domain/as_streamed.py). `compstream diff` and `compstream replay
--from-kafka` take them from the history topic (an event's last row: what the
books hold, also after a rebuild judged the events again); `replay
--from-history` from the store (its first row: what history's postings
follow).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterable

from compstream.domain.as_streamed import fold_as_streamed
from compstream.domain.balance import Balance
from compstream.domain.events import Event
from compstream.history.rows import HistoryError
from compstream.history.store import HistoryStore
from compstream.history.wire import decision_rows
from compstream.replay.kafka_source import SourceError, read_ranges, resolve_ranges
from compstream.worker.core.checkpoint import history_topic

if TYPE_CHECKING:
    from kafka import KafkaConsumer

    from compstream.config import Topics

Late = dict[str, list[tuple[str, datetime]]]  # engineer -> (event id, watermark), in the order applied
LATE_MAX = 1_000_000  # late events held in memory; past it a reader refuses rather than guess
# Events whose first row is tracked (a hash each, ~60 B); past it the first
# decisions are not known (Decisions.first None) rather than memory unbounded.
FIRST_SEEN_MAX = 20_000_000
_US = timedelta(microseconds=1)


def collect_late(records: Iterable[tuple[str, bytes]]) -> Late:
    """Late decisions of history records ((where, value) in topic order), per
    engineer in the order the books applied them (applied_seq; rows without
    it, from older builds, first in topic order). An event's last row wins:
    the books hold the last processing of an event (a rebuild judges the
    events again; on Faust, a re-read after a crash between its waves), while
    the loaders keep the first row in the store."""
    return collect_decisions(records, first=False).last


@dataclass(frozen=True)
class Decisions:
    """`last`: each event's last row (what the books hold); `first`: its first
    row (what the store keeps, and history's postings and statements follow)."""

    last: Late
    first: Late | None  # None: not collected, or more events than FIRST_SEEN_MAX

    def rejudged(self) -> set[str]:
        """Engineers whose late decisions were taken again otherwise (a
        rebuild): another event late, or under another watermark. (Not the
        order of two under one watermark: a rebuild replaying the decisions
        records its own order of reading them.)"""
        first = self.first or {}
        return {e for e in self.last.keys() | first.keys()
                if sorted(self.last.get(e, [])) != sorted(first.get(e, []))}


def collect_decisions(records: Iterable[tuple[str, bytes]], first: bool = True) -> Decisions:
    """Both views of the decisions (`first=False`: `last` only, and no memory
    spent on every event seen: `first` is then None)."""
    found: dict[tuple[str, str], tuple[int, int, datetime]] = {}
    found_first: dict[tuple[str, str], tuple[int, int, datetime]] = {}
    seen: set[int] = set()  # hash of each (engineer, event id) with a row so far: its first row is behind it
    n = 0
    for where, value in records:
        try:
            rows = decision_rows(value)
        except HistoryError as exc:
            raise SourceError(f"history record {where}: {exc}") from exc
        for engineer, event_id, late, watermark, seq in rows:
            key = (engineer, event_id)
            n += 1
            decision = None  # not late (or no watermark: stored before it was recorded)
            if late and watermark is not None:
                decision = (seq if seq is not None else -1, n, watermark)
            if first:
                h = hash(key)
                if h not in seen:
                    seen.add(h)
                    if decision is not None:
                        found_first[key] = decision
                    if len(seen) > FIRST_SEEN_MAX:
                        first = False
                        seen.clear()
            if decision is None:
                found.pop(key, None)
                continue
            found[key] = decision
            if len(found) > LATE_MAX or len(found_first) > LATE_MAX:
                raise SourceError(f"more than {LATE_MAX} late events on the history topic")
    return Decisions(_by_engineer(found), _by_engineer(found_first) if first else None)


def _by_engineer(found: dict[tuple[str, str], tuple[int, int, datetime]]) -> Late:
    """Each engineer's decisions by watermark, then in the order applied:
    the stream's watermark only moves forward, so for its rows that is the
    order applied; a rebuild replaying them (worker/recorded_late.py) reads
    them in its own order and applies them by watermark."""
    by_engineer: dict[str, list[tuple[datetime, int, int, str]]] = {}
    for (engineer, event_id), (seq, at, watermark) in found.items():
        by_engineer.setdefault(engineer, []).append((watermark, seq, at, event_id))
    return {e: [(event_id, w) for w, _, _, event_id in sorted(rows)] for e, rows in by_engineer.items()}


def read_late(consumer: KafkaConsumer, topics: Topics) -> Late:
    """The late decisions on the history topic (committed records only, as
    the consumer reads them). No history topic: none."""
    return read_decisions(consumer, topics, first=False).last


def read_decisions(consumer: KafkaConsumer, topics: Topics, first: bool = True) -> Decisions:
    topic = history_topic(topics)
    if not consumer.partitions_for_topic(topic):
        return Decisions({}, {} if first else None)
    return collect_decisions(((f"{r.topic}[{r.partition}]@{r.offset}", r.value)
                              for r in read_ranges(consumer, resolve_ranges(consumer, [topic]))), first)


def store_late(store: HistoryStore) -> Late:
    """The late decisions the history store keeps (one row per event)."""
    out: Late = {}
    for row in store.late_events():
        out.setdefault(row.engineer_id, []).append((row.event_id, row.applied_watermark))
    return out


def balance_as_streamed(engineer: str, events: list[Event], late: list[tuple[str, datetime]],
                        as_of: datetime | None) -> Balance:
    """The replay's balance of an engineer with late events: everything (None)
    or as of `as_of`. As of a time, events after it are left out and a late
    decision taken under a later watermark is taken at `as_of` (the state
    final then, with the expiries up to it)."""
    if as_of is not None:
        events = [e for e in events if e.event_time <= as_of]
        late = [(event_id, min(watermark, as_of + _US)) for event_id, watermark in late]
    book = fold_as_streamed(engineer, events, late)
    if as_of is None:
        book.finalize_all()
    else:
        book.advance(as_of + _US)
    return book.final_balance()
