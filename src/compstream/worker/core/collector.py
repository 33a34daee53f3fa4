"""The cyclic collector held off while a checkpoint step runs.

A step builds tens of thousands of objects per batch (decoded events, history
rows, postings) that all live until the step ends and are then freed by
reference counting. Young collections during the step scan those survivors
again and again and promote them, for nothing: measured, ~6 µs of the
~70 µs of CPU per event in `bench.bench_core_step` (bench/profile_notes.md,
2026-12-06 "the core's objects"). Paused, the collector runs between steps,
where the batch is already gone. A step makes no cyclic garbage of its own
(tests/worker/test_processor_garbage.py), so memory is unchanged; reference
counting frees everything else as before.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic GC for the block, if it is enabled (one thread
    runs steps; nothing else in the process toggles it)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
