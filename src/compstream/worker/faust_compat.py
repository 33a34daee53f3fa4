"""Small, documented workarounds for Faust behaviour the agents depend on."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def table_writes_for(stream):
    """Let table writes target a chosen event's partition, then restore the
    stream's own current event.

    Faust sends a table's changelog record to the partition of the *current*
    event. In a `noack_take` batch there is no natural current event, so we
    set one per write; but Faust's take buffer reads `stream.current_event`
    when it resumes after our batch, and left pointing at an old event it
    would buffer that one again and never buffer (process, ack) the new one.
    """
    saved = stream.current_event
    try:
        yield stream._set_current_event
    finally:
        stream.current_event = saved


def event_of_partition(events, partition: int):
    """The last event of `partition` in a batch (its changelog partition)."""
    for event in reversed(events):
        if event.message.partition == partition:
            return event
    raise RuntimeError(f"no event of partition {partition} in batch")
