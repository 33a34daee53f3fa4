"""Live balances (latest record per engineer on the balance topic) against a
fresh replay of the source topics, engineer by engineer, field by field.

Each BalanceUpdate carries `as_of`, the instant it is exact for, so each
engineer is replayed as of that instant (`as_of_latest`: as of the latest
event time on the source topics instead, which also flags books the worker
has not advanced yet). The balance topic is read *before* the source topics:
every event the worker had processed is then in what we replay.

Source records the worker refused (dead letters with stage too_old: too old
to check for duplicates, see book.SEEN_USAGE_DAYS; book_full: no room in
the engineer's book, see processor.BOOK_FULL; or future: usage dated too far
ahead of its record, see processor.FUTURE) are left out of the replay too:
the worker counted them nowhere, on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from compstream.codec import DecodeError, decode_record
from compstream.config import Settings
from compstream.domain.balance import BALANCE_FIELDS
from compstream.domain.book import TOO_OLD
from compstream.domain.events import Event
from compstream.domain.replay import ReplayResult, collect, fold_engineer
from compstream.replay.kafka_source import (
    BadMessage,
    SourceError,
    open_consumer,
    read_ranges,
    resolve_ranges,
    source_events,
)
from compstream.worker.processor import BOOK_FULL, FUTURE

if TYPE_CHECKING:
    from kafka import KafkaConsumer

COMPARED_FIELDS = BALANCE_FIELDS + ("events_applied",)
PRESENCE = "(presence)"
BAD_KEPT_MAX = 1_000  # bad source messages kept for the report; all are counted
REFUSED_MAX = 1_000_000  # refused-source dead letters held in memory to leave their sources out
REFUSED_STAGES = (TOO_OLD, BOOK_FULL, FUTURE)
RECORD = "(record)"


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
    out: dict[tuple[str, int, int], str] = {}
    for rec in read_ranges(consumer, resolve_ranges(consumer, [topic])):
        try:
            name, value = decode_record(rec.value)
        except DecodeError:
            continue
        if name == "DeadLetter" and value["stage"] in REFUSED_STAGES:
            if len(out) >= REFUSED_MAX:
                raise SourceError(f"more than {REFUSED_MAX} refused-source dead letters on {topic}")
            out[(value["source_topic"], value["source_partition"], value["source_offset"])] = value["stage"]
    return out


def expected(engineer: str, events: list[Event], as_of: datetime | None) -> dict[str, Any]:
    """What a correct worker reports for `engineer` as of `as_of`."""
    want = fold_engineer(engineer, events, as_of).balance().to_dict()
    # Every event taken in counts, also one dated after as_of (a grant
    # scheduled ahead) that the balance itself leaves out until its time.
    want["events_applied"] = len(events)
    return want


def compare(live: dict[str, dict], groups: dict[str, dict], *, latest: datetime | None = None,
            as_of_latest: bool = False) -> list[Difference]:
    out: list[Difference] = []
    for engineer in sorted(set(live) | set(groups)):
        record, evs = live.get(engineer), groups.get(engineer)
        if record is None:
            out.append(Difference(engineer, PRESENCE, "absent", f"{len(groups[engineer])} events"))
            continue
        if evs is None:
            out.append(Difference(engineer, PRESENCE, f"as_of {_plain(record.get('as_of'))}", "absent"))
            continue
        as_of = latest if as_of_latest else record.get("as_of")
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
    result.differences = broken + compare(live, groups, latest=latest, as_of_latest=as_of_latest)
    result.engineers_live, result.engineers_replay = len(live), len(groups)
    result.events, result.conflicts = replayed.events_in, replayed.conflicts
    return result
