"""LedgerCore.step holds the cyclic collector off while it runs
(worker/core/collector.py) and always hands it back as it found it; the
whole step, leaderboard-less here as in the bench, leaves no cyclic garbage
that the pause would keep until the next collection."""

from __future__ import annotations

import gc
from datetime import datetime, timezone

import pytest

from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.synth import generate
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.messages import SourceMessage
from support.messages import source_messages

PARTITIONS = 2
TOPICS = Topics.with_prefix("t")
T = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _core() -> LedgerCore:
    core = LedgerCore(CoreConfig(TOPICS, "w", PARTITIONS, 3600, BOOK_BYTES_MAX))
    for p in range(PARTITIONS):
        core.restore(p, [], {})
    return core


def _messages() -> list[SourceMessage]:
    out = source_messages(list(generate(30, 1_500, seed=5, with_hr=True)), PARTITIONS, T)
    topics = {"usage": TOPICS.usage, "grants": TOPICS.grants}
    return [SourceMessage(topics[m.topic], m.partition, m.offset, m.key, m.value, m.timestamp) for m in out]


def test_the_collector_is_paused_inside_the_step_and_restored_after():
    core, seen = _core(), []
    process = core.processor.process

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return process(*args, **kwargs)

    core.processor.process = spy  # type: ignore[method-assign]
    assert gc.isenabled()
    core.step(_messages()[:200])
    assert seen == [False] and gc.isenabled()


def test_the_collector_is_restored_when_the_step_raises():
    core = _core()
    core.processor.process = lambda *a, **kw: 1 / 0  # type: ignore[method-assign]
    with pytest.raises(ZeroDivisionError):
        core.step(_messages()[:10])
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled():
    gc.disable()
    try:
        _core().step(_messages()[:50])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_steps_leave_no_reference_cycles():
    core, messages = _core(), _messages()
    gc.collect()
    gc.disable()
    try:
        found = []
        for i in range(0, len(messages), 400):
            checkpoint = core.step(messages[i:i + 400])
            core.committed()
            applied = checkpoint.stats.applied
            del checkpoint
            found.append((applied, gc.collect()))
    finally:
        gc.enable()
    assert sum(applied for applied, _ in found) > 1_000
    assert [n for _, n in found] == [0] * len(found)
