"""Events -> the SourceMessages the worker's consumer would hand the ledger."""

from __future__ import annotations

from datetime import datetime, timedelta

from compstream.codec import encode_event
from compstream.worker.processor import SourceMessage, partition_of


def source_messages(events, partitions: int, t0: datetime) -> list[SourceMessage]:
    """Usage on "usage", everything else on "grants", keyed and partitioned
    by engineer, offsets counted per topic-partition; record time t0 + n ms."""
    out, offsets = [], {}
    for n, e in enumerate(events):
        topic = "usage" if e.type == "usage" else "grants"
        p = partition_of(e.engineer_id, partitions)
        offset = offsets[(topic, p)] = offsets.get((topic, p), -1) + 1
        out.append(SourceMessage(topic, p, offset, e.engineer_id.encode(), encode_event(e),
                                 t0 + timedelta(milliseconds=n)))
    return out
