"""The ingest journal from the usage topic: rebuild it, and tell when it is needed.

The journal (journal.py) is local derived state; the usage topic is the
truth. On a new host or after a wiped data dir the journal is empty while the
topic is not, and an ingest without it would re-send restated rows as
originals with other numbers (the worker's `conflict` dead letters). Ingest
therefore rebuilds an empty journal before delivering to a non-empty topic
(`compstream ingest ... --no-journal-rebuild` only warns), and
`compstream ingest rebuild-journal` rebuilds on demand.

The read is bounded (end offsets taken at the start, replay/kafka_source.py) and
decodes like the worker: records the worker dead-letters (undecodable, key !=
engineer) and non-usage events are counted, not folded in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from compstream.domain.events import Usage
from compstream.ingest.journal import REVISION_MARKER_HEADER, Journal, RebuildStats
from compstream.replay.kafka_source import (
    BadMessageError,
    SourceError,
    decode_source,
    open_consumer,
    read_ranges,
    resolve_ranges,
)

if TYPE_CHECKING:
    from kafka.consumer.fetcher import ConsumerRecord

__all__ = ["SourceError", "TopicRebuild", "marker_headers", "rebuild_from_topic", "topic_has_records"]


@dataclass
class TopicRebuild:
    stats: RebuildStats
    records: int = 0  # records read from the topic
    bad: int = 0  # records the worker dead-letters too
    not_usage: int = 0


def marker_headers(journal: Journal) -> Callable[[Usage], list[tuple[str, bytes]]]:
    """`publish(headers=...)` for an ingest run: the row's revision marker as
    the journal holds it after the run's conversion (same transaction)."""

    def headers(event: Usage) -> list[tuple[str, bytes]]:
        entry = journal.get(event.corrects_event_id or event.event_id)
        if entry is None or not entry.revision_marker:
            return []
        return [(REVISION_MARKER_HEADER, entry.revision_marker.encode("utf-8"))]

    return headers


def topic_has_records(bootstrap: str, topic: str) -> bool:
    """True when any partition of `topic` holds a record; a missing topic holds none."""
    consumer = open_consumer(bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            return False
        from kafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in parts]
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        return any(end[tp] > begin[tp] for tp in tps)
    finally:
        consumer.close()


def _marker(record: ConsumerRecord) -> str | None:
    for name, value in record.headers or ():
        if name == REVISION_MARKER_HEADER and value:
            return value.decode("utf-8", "replace")
    return None


def rebuild_from_topic(journal: Journal, bootstrap: str, topic: str) -> TopicRebuild:
    """Replace the journal's rows with the topic's content; the caller commits.

    Raises SourceError when the topic cannot be read (missing, unreachable, stalled).
    """
    consumer = open_consumer(bootstrap)
    result = TopicRebuild(RebuildStats())

    def records() -> Iterator[tuple[Usage, str | None]]:
        for record in read_ranges(consumer, resolve_ranges(consumer, [topic])):
            result.records += 1
            try:
                event = decode_source(record)
            except BadMessageError:
                result.bad += 1
                continue
            if not isinstance(event, Usage):
                result.not_usage += 1
                continue
            yield event, _marker(record)

    try:
        result.stats = journal.rebuild_marked(records())
    finally:
        consumer.close()
    return result
