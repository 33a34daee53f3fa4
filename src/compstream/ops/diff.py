"""Live balances (latest record per engineer on the balance topic) against a
fresh replay of the source topics, engineer by engineer, field by field.

Each BalanceUpdate carries `as_of`, the instant it is exact for, so each
engineer is replayed as of that instant (`as_of_latest`: as of the latest
event time on the source topics instead, which also flags books the worker
has not advanced yet). The balance topic is read *before* the source topics:
every event the worker had processed is then in what we replay.

Late events (older than their book's watermark when they arrived) are
applied on top of the final state, so where one crossed an expiry or a
revocation the live balance is not the sorted replay's. Whether an event was
late depends on what the stream had read when it arrived, which the worker
records in its history rows (`late`, `applied_watermark`, `applied_seq`). The
diff reads those decisions from the history topic (after the balances, so it
holds at least the decisions behind them) and replays each engineer with late
events as the stream applied them (domain/as_streamed.py): the amounts still
come from the source topics, only the decisions from the history. A decision
the events contradict is a difference.

Source records the worker refused (dead letters with stage too_old: too old
to check for duplicates, see book.SEEN_USAGE_DAYS; book_full: no room in
the engineer's book, see processor.BOOK_FULL; or future: usage dated too far
ahead of its record, see processor.FUTURE) are left out of the replay too:
the worker counted them nowhere, on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Iterable

from compstream.codec import DecodeError, decode_event, decode_record
from compstream.config import Settings
from compstream.domain.as_streamed import LateDecisionError, fold_as_streamed
from compstream.domain.balance import BALANCE_FIELDS
from compstream.domain.book import TOO_OLD
from compstream.domain.events import Event, EventError
from compstream.domain.replay import ReplayResult, collect, fold_engineer
from compstream.replay.kafka_source import (
    BadMessage,
    SourceError,
    open_consumer,
    read_ranges,
    resolve_ranges,
    source_events,
)
from compstream.replay.late_decisions import Late, read_decisions
from compstream.worker.processor import BOOK_FULL, FUTURE, STREAM_TIME_STAGES

if TYPE_CHECKING:
    from kafka import KafkaConsumer

_US = timedelta(microseconds=1)
COMPARED_FIELDS = BALANCE_FIELDS + ("events_applied",)
PRESENCE = "(presence)"
BAD_KEPT_MAX = 1_000  # bad source messages kept for the report; all are counted
REFUSED_MAX = 1_000_000  # refused-source dead letters held in memory to leave their sources out
REFUSED_STAGES = (TOO_OLD, BOOK_FULL, FUTURE)
RECORD = "(record)"
LATE = "(late decision)"


@dataclass(frozen=True, slots=True)
class Difference:
    engineer_id: str
    field: str
    live: Any
    replay: Any

    def to_dict(self) -> dict:
        return {"engineer_id": self.engineer_id, "field": self.field,
                "live": _plain(self.live), "replay": _plain(self.replay)}


@dataclass
class DiffResult:
    differences: list[Difference] = field(default_factory=list)
    engineers_live: int = 0
    engineers_replay: int = 0
    events: int = 0
    conflicts: int = 0
    bad_messages: list[BadMessage] = field(default_factory=list)
    bad_count: int = 0
    # Source records left out: the worker refused them (dead letters), by stage.
    refused_too_old: int = 0
    refused_book_full: int = 0
    refused_future: int = 0
    # Engineers with late events, replayed as the stream applied them.
    late_engineers: int = 0
    late_events: int = 0
    # Engineers whose late decisions were taken again (a rebuild: the history
    # topic's last rows, which the books follow, differ from its first rows,
    # which the store keeps), and where that makes the live balance differ
    # from the balance by the first decisions: what history's postings,
    # statements and `audit verify` show for them. Not in `differences` (the
    # books are right by their own decisions); `rebuild` fails on them.
    # None: not known (more history than late_decisions.FIRST_SEEN_MAX).
    rejudged_engineers: int | None = 0
    statement_differences: list[Difference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def read_live_balances(consumer: KafkaConsumer, topic: str) -> tuple[dict[str, dict], list[Difference]]:
    """Latest BalanceUpdate per engineer; an unreadable record is a difference
    (a consumer of the topic would choke on it too). Tombstones delete."""
    live: dict[str, dict] = {}
    broken: list[Difference] = []
    for record in read_ranges(consumer, resolve_ranges(consumer, [topic])):
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        if record.value is None:
            if key is not None:
                live.pop(key, None)
            continue
        try:
            name, value = decode_record(record.value)
            if name != "BalanceUpdate":
                raise DecodeError("schema", f"{name} on the balance topic")
        except DecodeError as exc:
            where = f"{record.topic}[{record.partition}]@{record.offset}"
            broken.append(Difference(key or "?", RECORD, f"unreadable at {where}: {exc}", None))
            continue
        live[value["engineer_id"]] = value
    return live, broken


def refused_sources(consumer: KafkaConsumer, topic: str) -> dict[tuple[str, int, int], str]:
    """(topic, partition, offset) -> stage of every source record the worker
    dead-lettered as refused (REFUSED_STAGES). Unreadable dead letters are
    `dlq list`'s business, not ours."""
    if not consumer.partitions_for_topic(topic):
        return {}  # no dead letter was ever written
    return refused_in((rec.value for rec in read_ranges(consumer, resolve_ranges(consumer, [topic]))), topic)


def refused_in(values: Iterable[bytes | None], topic: str = "the dead-letter topic") -> dict[tuple[str, int, int], str]:
    """refused_sources over the dead-letter topic's values, in order (the first refusal of a record counts)."""
    return dead_letters_in(values, topic)[0]


Moves = dict[tuple[str, int], list[tuple[int, datetime]]]


def dead_letters_in(values: Iterable[bytes | None], topic: str = "the dead-letter topic"
                    ) -> tuple[dict[tuple[str, int, int], str], Moves]:
    """The refused source records (refused_in), and per source partition the
    (offset, event time) of each dead-lettered usage that moved its stream
    time (processor.STREAM_TIME_STAGES), by offset: a rebuild's reading of
    what stream time the stream had (worker/recorded_late.py)."""
    refused: dict[tuple[str, int, int], str] = {}
    moves: Moves = {}
    moved = 0
    for value in values:
        if value is None:
            continue
        try:
            name, record = decode_record(value)
        except DecodeError:
            continue
        if name != "DeadLetter":
            continue
        where = (record["source_topic"], record["source_partition"], record["source_offset"])
        if record["stage"] in REFUSED_STAGES:
            refused.setdefault(where, record["stage"])
        if record["stage"] in STREAM_TIME_STAGES:
            try:
                event = decode_event(record["raw"])
            except (DecodeError, EventError):
                continue  # (it passed decoding once; a newer schema would be the reason)
            if event.type == "usage":
                moves.setdefault(where[:2], []).append((where[2], event.event_time))
                moved += 1
        if len(refused) + moved > REFUSED_MAX:
            raise SourceError(f"more than {REFUSED_MAX} dead letters of refused or stream-moving records on {topic}")
    for found in moves.values():
        found.sort()
    return refused, moves


def expected(engineer: str, events: list[Event], as_of: datetime | None) -> dict[str, Any]:
    """What a correct worker reports for `engineer` as of `as_of`."""
    want = fold_engineer(engineer, events, as_of).balance().to_dict()
    # Every event taken in counts, also one dated after as_of (a grant
    # scheduled ahead) that the balance itself leaves out until its time.
    want["events_applied"] = len(events)
    return want


def expected_as_streamed(engineer: str, events: list[Event], late: list[tuple[str, datetime]],
                         watermark: datetime | None, as_of: datetime | None) -> dict[str, Any]:
    """What a correct worker reports for an engineer with late events: the
    book as the stream built it, at the record's watermark, as of `as_of`.
    Raises LateDecisionError on a decision the events contradict."""
    book = fold_as_streamed(engineer, events, late)
    if watermark is not None:
        book.advance(watermark)
    want = book.balance(as_of).to_dict()
    want["events_applied"] = len(events)
    return want


def compare(live: dict[str, dict], groups: dict[str, dict], *, latest: datetime | None = None,
            as_of_latest: bool = False, late: Late | None = None) -> list[Difference]:
    out: list[Difference] = []
    late = late or {}
    for engineer in sorted(set(live) | set(groups)):
        record, evs = live.get(engineer), groups.get(engineer)
        if record is None:
            out.append(Difference(engineer, PRESENCE, "absent", f"{len(groups[engineer])} events"))
            continue
        if evs is None:
            out.append(Difference(engineer, PRESENCE, f"as_of {_plain(record.get('as_of'))}", "absent"))
            continue
        as_of = latest if as_of_latest else record.get("as_of")
        decisions = late.get(engineer)
        if decisions:
            # --as-of-latest: as if the watermark had passed the latest event.
            watermark = latest + _US if as_of_latest and latest is not None else record.get("watermark")
            try:
                want = expected_as_streamed(engineer, list(evs.values()), decisions, watermark, as_of)
            except LateDecisionError as exc:
                out.append(Difference(engineer, LATE, str(exc), "not late"))
                continue
        else:
            want = expected(engineer, list(evs.values()), as_of)
        for name in COMPARED_FIELDS:
            if record.get(name) != want[name]:
                out.append(Difference(engineer, name, record.get(name), want[name]))
    return out


def run_diff(settings: Settings, *, as_of_latest: bool = False,
             on_bad: Callable[[BadMessage], None] | None = None) -> DiffResult:
    """Raises kafka_source.SourceError when a topic cannot be read."""
    result = DiffResult()
    consumer = open_consumer(settings.kafka_bootstrap)
    try:
        live, broken = read_live_balances(consumer, settings.topics.balances)

        def bad(message: BadMessage) -> None:
            result.bad_count += 1
            if len(result.bad_messages) < BAD_KEPT_MAX:
                result.bad_messages.append(message)
            if on_bad is not None:
                on_bad(message)

        decisions = read_decisions(consumer, settings.topics)
        late = decisions.last
        refused = refused_sources(consumer, settings.topics.dead_letters)
        stages = list(refused.values())
        result.refused_too_old, result.refused_book_full = stages.count(TOO_OLD), stages.count(BOOK_FULL)
        result.refused_future = stages.count(FUTURE)
        ranges = resolve_ranges(consumer, [settings.topics.usage, settings.topics.grants])
        replayed = ReplayResult(balances={})
        groups = collect(source_events(consumer, ranges, bad, skip=refused), replayed)
    finally:
        consumer.close()
    latest = max((e.event_time for evs in groups.values() for e in evs.values()), default=None)
    late = {e: d for e, d in late.items() if e in groups}
    result.late_engineers, result.late_events = len(late), sum(map(len, late.values()))
    result.differences = broken + compare(live, groups, latest=latest, as_of_latest=as_of_latest, late=late)
    if decisions.first is None:
        result.rejudged_engineers = None
    else:
        rejudged = sorted(e for e in decisions.rejudged() if e in groups and e in live)
        result.rejudged_engineers = len(rejudged)
        first = decisions.first
        result.statement_differences = compare(
            {e: live[e] for e in rejudged}, {e: groups[e] for e in rejudged}, latest=latest,
            as_of_latest=as_of_latest, late={e: first[e] for e in rejudged if e in first})
    result.engineers_live, result.engineers_replay = len(live), len(groups)
    result.events, result.conflicts = replayed.events_in, replayed.conflicts
    return result
