"""A processed batch leaves no cyclic garbage behind.

The worker raises CPython's young-generation threshold (worker/run.py), so
anything a batch leaves in a reference cycle lives on until a full
collection: thousands of rows, events and books per batch, scanned by every
collection on the way. Until 2026-12-02 the batch's BookRoom held a bound
method of the batch itself; this test found 4,014 objects per 2,000-event
batch in such a cycle.
"""

from __future__ import annotations

import gc
from datetime import datetime, timezone

from compstream.synth import generate
from compstream.worker.processor import LedgerProcessor, SourceMessage
from support.messages import source_messages

PARTITIONS = 4
T = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _messages() -> list[SourceMessage]:
    events = list(generate(40, 2_000, seed=3, with_hr=True))
    events += events[100:140]  # redelivered: duplicates
    out = source_messages(events, PARTITIONS, T)
    out.insert(50, SourceMessage("usage", 0, 10_000, b"eng-00000", b"\xc3\x01garbage", T))  # dead letter
    out.insert(90, SourceMessage("usage", 1, 10_001, b"someone-else", out[5].value, T))  # wrong key
    return out


def test_batches_leave_no_reference_cycles():
    messages = _messages()
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(3600, load_book=store.get, partitions=PARTITIONS)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()  # else a collection mid-batch could hide the garbage
    try:
        found = []
        for i in range(0, len(messages), 500):
            result = proc.process(messages[i:i + 500], keys=lambda: list(store), sweep=True)
            for engineer, (data, _partition) in result.books.items():
                store[engineer] = data
            applied = result.applied
            del result
            found.append((applied, gc.collect()))
    finally:
        if was_enabled:
            gc.enable()
    assert sum(applied for applied, _ in found) > 1_000  # the batches did real work
    assert [n for _, n in found] == [0] * len(found)
