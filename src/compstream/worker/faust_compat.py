"""Small, documented workarounds for Faust behaviour the agents depend on."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

log = logging.getLogger(__name__)


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


def exit_on_crash(name: str, exit_code: int):
    """Decorate an agent: Faust keeps a crashed agent's process alive but idle,
    which would also stall every commit of the shared source topics. Exit
    instead: nothing unacked was committed, so a restarted worker replays it."""

    def wrap(fn):
        async def agent(stream):
            try:
                await fn(stream)
            except Exception:
                log.exception("%s agent crashed; exiting so a supervisor restarts the worker", name)
                logging.shutdown()
                os._exit(exit_code)

        agent.__name__ = fn.__name__
        return agent

    return wrap
