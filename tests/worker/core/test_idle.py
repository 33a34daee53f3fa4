"""The idleness rule: a quiet month end becomes final without new usage, and
an export that arrives after it is applied as late (flagged in history)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from compstream.codec import decode_record, encode_event
from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.domain.events import GrantIssued, Usage
from compstream.history.wire import decode_batch
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore, history_topic
from compstream.worker.core.loop import CheckpointLoop
from compstream.worker.core.memory import MemoryInput, MemoryLog, MemoryOutput
from support.messages import record_time
from worker.core.scenario import Clock

TOPICS = Topics.with_prefix("idle")
OCT = datetime(2026, 10, 1, tzinfo=timezone.utc)
WALL = datetime(2026, 11, 15, tzinfo=timezone.utc)
LATENESS_S = 6 * 3600


def _setup(idle_advance_s: float):
    log = MemoryLog(1)
    clock = Clock()
    source = MemoryInput(log, (TOPICS.usage, TOPICS.grants), random.Random(1), OCT)
    source.assign([(TOPICS.usage, 0), (TOPICS.grants, 0)])
    config = CoreConfig(TOPICS, "w", 1, LATENESS_S, BOOK_BYTES_MAX)
    loop = CheckpointLoop(lambda: LedgerCore(config), source, MemoryOutput(log), idle_s=1e9, clock=clock,
                          idle_advance_s=idle_advance_s, wall_clock=lambda: WALL)
    return log, clock, loop


def _publish(log, event) -> None:
    log.append(TOPICS.usage if event.type == "usage" else TOPICS.grants, event.engineer_id.encode(),
               encode_event(event), timestamp=record_time(event, OCT))


def _rows(log):
    events, postings = [], []
    for _, value in log.topic_records(history_topic(TOPICS)):
        batch = decode_batch(value)
        events += batch.events
        postings += batch.postings
    return events, postings


def _last_balance(log) -> dict:
    return decode_record(log.topic_records(TOPICS.balances)[-1][1])[1]


def _run(loop, clock, rounds: int, quiet_s: float = 0.0) -> None:
    for _ in range(rounds):
        clock.t += quiet_s
        loop.run_once()


def test_a_quiet_month_end_becomes_final_then_a_late_export_is_flagged():
    log, clock, loop = _setup(idle_advance_s=60)
    _publish(log, GrantIssued("g1", "ada", "G1", 100 * 10**9, OCT, OCT + timedelta(days=20), "allowance"))
    _publish(log, Usage("u1", "ada", "openai", "gpt-4o", OCT + timedelta(days=4), 10, 10, 0, 0, 7 * 10**9))
    _run(loop, clock, 20)
    _, postings = _rows(log)
    assert [p.kind for p in postings] == ["issue"]  # the usage is pending: nothing came after it
    _run(loop, clock, 3, quiet_s=61)  # a quiet minute: stream time moves to the wall clock
    _, postings = _rows(log)
    assert [p.kind for p in postings] == ["issue", "consume", "expire"]
    assert sum(p.amount_nanos for p in postings if p.kind == "expire") == 93 * 10**9
    assert _last_balance(log)["watermark"] == WALL - timedelta(seconds=LATENESS_S)

    _publish(log, Usage("u2", "ada", "anthropic", "claude", OCT + timedelta(days=25), 10, 10, 0, 0, 10**9))
    _run(loop, clock, 20)
    events, postings = _rows(log)
    assert [(e.event_id, e.late) for e in events if e.type == "usage"] == [("u1", False), ("u2", True)]
    assert postings[-1].cause_event_id == "u2"


def test_off_by_default_nothing_moves_without_usage():
    log, clock, loop = _setup(idle_advance_s=0)
    _publish(log, GrantIssued("g1", "ada", "G1", 100 * 10**9, OCT, OCT + timedelta(days=20), "allowance"))
    _publish(log, Usage("u1", "ada", "openai", "gpt-4o", OCT + timedelta(days=4), 10, 10, 0, 0, 7 * 10**9))
    _run(loop, clock, 20)
    _run(loop, clock, 3, quiet_s=10_000)
    _, postings = _rows(log)
    assert [p.kind for p in postings] == ["issue"]
