"""`audit verify --replay` holds history to its own finality claims: a
watermark row says every posting of its partition's engineers dated before
its `final_through` is written. A stream that skipped a book (as a sweep
with stale due times did) or a deleted tail (which the hash chain alone
shows only against a stored digest) leaves such a posting missing."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

from compstream.codec import encode_event
from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.domain.events import GrantIssued, Usage
from compstream.history.memory import MemoryHistoryStore
from compstream.history.verify import verify_store
from compstream.history.verify_replay import NOT_FINAL
from compstream.history.wire import decode_batch
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore, history_topic
from compstream.worker.core.loop import CheckpointLoop
from compstream.worker.core.memory import MemoryInput, MemoryLog, MemoryOutput
from compstream.worker.processor import LedgerProcessor
from worker.core.scenario import Clock

TOPICS = Topics.with_prefix("claims")
DAY = datetime(2026, 10, 10, tzinfo=timezone.utc)
LATENESS_S = 6 * 3600


def _history() -> list:
    """The history batches of a drained worker: ada and ken with a grant that
    expires at 02:00, usage every 2 hours over two days."""
    log = MemoryLog(1)
    for e in ("ada", "ken"):
        grant = GrantIssued(f"g-{e}", e, f"G-{e}", 20 * 10**9, DAY - timedelta(days=1), DAY + timedelta(hours=2),
                            "allowance")
        log.append(TOPICS.grants, e.encode(), encode_event(grant))
    for h in range(0, 48, 2):
        for e in ("ada", "ken"):
            usage = Usage(f"u-{e}-{h}", e, "openai", "gpt-4o", DAY + timedelta(hours=h), 10, 10, 0, 0, 10**9)
            log.append(TOPICS.usage, e.encode(), encode_event(usage), timestamp=usage.event_time)
    source = MemoryInput(log, (TOPICS.usage, TOPICS.grants), random.Random(3), DAY)
    source.assign([(TOPICS.usage, 0), (TOPICS.grants, 0)])
    config = CoreConfig(TOPICS, "w", 1, LATENESS_S, BOOK_BYTES_MAX)
    loop = CheckpointLoop(lambda: LedgerCore(config), source, MemoryOutput(log), idle_s=1e9,
                          batch_events_max=8, clock=Clock())
    for _ in range(60):
        loop.run_once()
    return [decode_batch(v) for _, v in log.topic_records(history_topic(TOPICS))]


def _store(batches, drop=None) -> MemoryHistoryStore:
    store = MemoryHistoryStore()
    store.migrate()
    for n, batch in enumerate(batches):
        if drop is not None:
            batch = replace(batch, postings=tuple(p for p in batch.postings if p != drop))
        store.append_batch(batch, f"t{n}")
    return store


def test_a_complete_history_keeps_its_claims():
    batches = _history()
    store = _store(batches)
    final = store.final_through(0)
    ada = store.postings_for("ada")
    assert final is not None and ada and ada[-1].event_time < final.final_through  # the claim covers ada's tail
    report = verify_store(store, replay=True)
    assert report.clean, report.findings


def test_a_final_posting_missing_is_found_where_the_chain_sees_nothing():
    batches = _history()
    tail = _store(batches).postings_for("ada")[-1]
    store = _store(batches, drop=tail)
    chain_only = verify_store(store, replay=False)
    assert chain_only.clean  # a deleted tail: no digest stored, the chain still links
    report = verify_store(store, replay=True)
    assert [(f.engineer_id, f.seq, f.kind) for f in report.findings] == [("ada", tail.seq, NOT_FINAL)]


def _partition_back_history() -> MemoryHistoryStore:
    """test_partition_return's case (a partition moves to another worker and
    back; meanwhile alice gets an earlier pending usage), its history loaded."""
    from worker.core.test_partition_return import Log, partition_back

    log = Log()
    partition_back(log)
    return _store([decode_batch(v) for v in log.history])


def test_the_audit_finds_what_a_sweep_with_stale_due_times_left_out():
    """The bug test_partition_return guards, seen from history: with the
    restored books' old due times kept, the watermark row claims alice's
    09:00 usage final and its posting is missing."""
    assert verify_store(_partition_back_history(), replay=True).clean
    with patch.object(LedgerProcessor, "forget_books", lambda self, engineers: None):
        report = verify_store(_partition_back_history(), replay=True)
    assert {(f.engineer_id, f.kind) for f in report.findings} == {("alice", NOT_FINAL)}, report.findings
