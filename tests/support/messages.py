"""Events -> the SourceMessages the worker's consumer would hand the ledger."""

from __future__ import annotations

from datetime import datetime, timedelta

from compstream.codec import encode_event
from compstream.worker.processor import SourceMessage, partition_of


def source_messages(events, partitions: int, t0: datetime) -> list[SourceMessage]:
    """Usage on "usage", everything else on "grants", keyed and partitioned
    by engineer, offsets counted per topic-partition; record time t0 + n ms
    (or the usage's own time, if later: `record_time`)."""
    out, offsets = [], {}
    for n, e in enumerate(events):
        topic = "usage" if e.type == "usage" else "grants"
        p = partition_of(e.engineer_id, partitions)
        offset = offsets[(topic, p)] = offsets.get((topic, p), -1) + 1
        out.append(SourceMessage(topic, p, offset, e.engineer_id.encode(), encode_event(e),
                                 record_time(e, t0 + timedelta(milliseconds=n))))
    return out


def record_time(event, at: datetime) -> datetime:
    """When a producer could have published `event` at the earliest, given a
    test's clock `at`: usage cannot be published before it happened (the
    worker refuses usage dated ahead of its record, processor.FUTURE), so its
    record is stamped at its event time if that is later; HR events are
    published ahead of their effective time and keep `at`."""
    if event.type == "usage" and event.event_time > at:
        return event.event_time
    return at
