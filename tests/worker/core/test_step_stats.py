"""LedgerCore.step's statistics: `applied_by_type` counts, per event type,
exactly the fresh messages the ledger applied (read from the processor's
decoded events, not by looking every message up again): not the stale ones,
the republished duplicates, the garbage, the wrong keys."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from unittest.mock import patch

import pytest

from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.domain import book as book_module
from compstream.synth import generate
from compstream.worker.book_changelog import is_segment_key
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.messages import SourceMessage
from compstream.worker.positions import is_position_key
from support.messages import source_messages

PARTITIONS = 2
T = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("seed", range(3))
def test_applied_by_type_counts_what_the_ledger_applied(seed):
    rng = random.Random(seed)
    events = list(generate(6, 300, seed=seed, with_hr=True))
    topics = Topics(usage="usage", grants="grants")  # the topics source_messages writes
    messages = source_messages(events, PARTITIONS, T)
    expected = Counter(e.type for e in events)  # each event once, valid: all applied
    assert len(expected) > 2  # usage, grants and HR events
    # Republished copies (new offsets, same bytes) are duplicates; garbage and
    # a wrong key are dead letters; none of them counts.
    extra = []
    for m in rng.sample(messages, 20):
        extra.append(replace(m, offset=m.offset + 10_000))
    extra.append(SourceMessage("usage", 0, 20_000, b"eng-x", b"\xc3\x01garbage", T))
    extra.append(SourceMessage("usage", 1, 20_001, b"someone-else", messages[0].value, T))
    core = LedgerCore(CoreConfig(topics, "w", PARTITIONS, 3600, BOOK_BYTES_MAX))
    for p in range(PARTITIONS):
        core.restore(p, [], {})
    counted: Counter = Counter()
    cut = len(messages) // 2
    first = core.step(messages[:cut])
    core.committed()
    counted.update(first.stats.applied_by_type)
    # The second batch starts again from the beginning: the first half is stale.
    second = core.step(messages + extra)
    core.committed()
    counted.update(second.stats.applied_by_type)
    assert second.stats.stale == cut
    assert second.stats.duplicates >= 20 and second.stats.dead_letters == 2
    assert counted == expected


def test_book_bytes_count_every_book_record_of_the_changelog():
    """What a batch costs the changelog, busy books (heads and segments) included."""
    events = list(generate(3, 600, seed=4, span_days=4))
    topics = Topics(usage="usage", grants="grants")
    messages = source_messages(events, PARTITIONS, T)
    core = LedgerCore(CoreConfig(topics, "w", PARTITIONS, 3600, BOOK_BYTES_MAX))
    for p in range(PARTITIONS):
        core.restore(p, [], {})
    segments = 0
    with patch.object(book_module, "SEAL_RECORDS_MIN", 1):
        for at in range(0, len(messages), 50):
            checkpoint = core.step(messages[at:at + 50])
            core.committed()
            books = [r for r in checkpoint.records
                     if r.topic == core.changelog and not is_position_key(r.key.decode())]
            segments += sum(is_segment_key(r.key.decode()) for r in books)
            assert checkpoint.stats.book_records == len(books)
            assert checkpoint.stats.book_bytes == sum(len(r.value or b"") for r in books)
    assert segments > 0
