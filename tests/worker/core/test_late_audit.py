"""One deterministic rule for late events, reproduced by the auditor's replay:
exports from two providers a day apart (the older one past the lateness) give
late events; `audit verify --replay` finds nothing on that history, and still
finds an edited event."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from compstream.codec import encode_event
from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.domain.events import GrantIssued, Usage
from compstream.history.memory import MemoryHistoryStore
from compstream.history.rows import HistoryBatch
from compstream.history.verify import verify_store
from compstream.history.wire import decode_batch
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore, history_topic
from compstream.worker.core.loop import CheckpointLoop
from compstream.worker.core.memory import MemoryInput, MemoryLog, MemoryOutput
from support.messages import record_time
from worker.core.scenario import Clock

TOPICS = Topics.with_prefix("late")
DAY = datetime(2026, 10, 10, tzinfo=timezone.utc)
LATENESS_S = 6 * 3600


def _publish(log, events, at: datetime) -> None:
    """Records stamped `at`, when the export was published (after its usage)."""
    for e in events:
        log.append(TOPICS.usage if e.type == "usage" else TOPICS.grants, e.engineer_id.encode(), encode_event(e),
                   timestamp=record_time(e, at))


def _drain(loop, rounds: int = 30) -> None:
    for _ in range(rounds):
        loop.run_once()


def history_store(log, topics: Topics = TOPICS) -> MemoryHistoryStore:
    """Every history record on the log, loaded into a store (one token each)."""
    store = MemoryHistoryStore()
    store.migrate()
    for n, (_, value) in enumerate(log.topic_records(history_topic(topics))):
        store.append_batch(decode_batch(value), f"t{n}")
    return store


def _history_with_late_events():
    log = MemoryLog(1)
    source = MemoryInput(log, (TOPICS.usage, TOPICS.grants), random.Random(3), DAY)
    source.assign([(TOPICS.usage, 0), (TOPICS.grants, 0)])
    config = CoreConfig(TOPICS, "w", 1, LATENESS_S, BOOK_BYTES_MAX)
    loop = CheckpointLoop(lambda: LedgerCore(config), source, MemoryOutput(log), idle_s=1e9, clock=Clock())
    grants = [GrantIssued(f"g-{e}", e, f"G-{e}", 20 * 10**9, DAY - timedelta(days=5), DAY + timedelta(hours=2),
                          "allowance") for e in ("ada", "ken")]
    openai = [Usage(f"oa-{e}-{h}", e, "openai", "gpt-4o", DAY + timedelta(hours=h), 10, 10, 0, 0, 3 * 10**9)
              for e in ("ada", "ken") for h in range(0, 24, 4)]
    _publish(log, grants + openai, DAY + timedelta(days=1))  # today's OpenAI export, at the day's end
    _drain(loop)
    anthropic = [Usage(f"an-{e}-{h}", e, "anthropic", "claude", DAY - timedelta(days=1, hours=-h), 10, 10, 0, 0,
                       2 * 10**9) for e in ("ada", "ken") for h in range(0, 24, 6)]
    _publish(log, anthropic, DAY + timedelta(days=1, hours=1))  # yesterday's Anthropic export, a day later
    _drain(loop)
    return history_store(log)


def test_late_events_from_a_day_old_export_verify_clean():
    store = _history_with_late_events()
    late = {r.event_id for e in ("ada", "ken") for r in store.events_for(e) if r.late}
    day_old = {f"an-{e}-{h}" for e in ("ada", "ken") for h in range(0, 24, 6)}
    assert day_old <= late, "the day-old export must be late: the scenario would test nothing"
    report = verify_store(store, replay=True)
    assert report.findings == [], report.findings[:3]


def test_an_edited_late_event_is_still_found():
    store = _history_with_late_events()
    victim = next(r for r in store.events_for("ada") if r.late)
    forged = replace(victim, payload=victim.payload.replace('"cost_nanos":2000000000', '"cost_nanos":1000000'))
    assert forged.payload != victim.payload
    forged_store = MemoryHistoryStore()
    forged_store.migrate()
    for e in ("ada", "ken"):
        rows = [forged if r.event_id == victim.event_id else r for r in store.events_for(e)]
        forged_store.append_batch(HistoryBatch(events=tuple(rows), postings=tuple(store.postings_for(e))), f"f-{e}")
    report = verify_store(forged_store, replay=True)
    assert any(f.kind == "replay_mismatch" and f.engineer_id == "ada" for f in report.findings), report.findings


def test_a_late_grant_applied_before_a_late_usage_published_earlier_verifies_clean():
    """A batch applies HR events first, so a retroactive grant published after
    a day-old usage export is applied before that usage, although its Kafka
    timestamp is later; both are late, so the order decides the postings
    (the usage draws on the grant instead of going into overdraft). The
    auditor must replay the order the worker applied, not the timestamps'."""
    log = MemoryLog(1)
    source = MemoryInput(log, (TOPICS.usage, TOPICS.grants), random.Random(5), DAY)
    source.assign([(TOPICS.usage, 0), (TOPICS.grants, 0)])
    config = CoreConfig(TOPICS, "w", 1, LATENESS_S, BOOK_BYTES_MAX)
    loop = CheckpointLoop(lambda: LedgerCore(config), source, MemoryOutput(log), idle_s=1e9, clock=Clock())
    small = GrantIssued("g-small", "ada", "G0", 1_000, DAY - timedelta(days=2), None, "allowance")
    today = [Usage(f"u-{h}", "ada", "openai", "gpt-4o", DAY + timedelta(hours=h), 10, 10, 0, 0, 100) for h in (0, 10)]
    _publish(log, [small, *today], DAY + timedelta(hours=11))
    _drain(loop)  # the watermark is DAY + 4 h now
    usage = Usage("u-old", "ada", "anthropic", "claude", DAY + timedelta(hours=1), 10, 10, 0, 0, 2_000)
    retro = GrantIssued("g-retro", "ada", "GR", 5_000, DAY - timedelta(days=1), DAY + timedelta(days=20), "bonus")
    _publish(log, [usage], DAY + timedelta(hours=12))
    _publish(log, [retro], DAY + timedelta(hours=12, minutes=5))  # published after the usage
    _drain(loop)
    store = history_store(log)
    rows = {r.event_id: r for r in store.events_for("ada")}
    assert rows["u-old"].late and rows["g-retro"].late, "both must be late: the scenario would test nothing"
    assert rows["u-old"].ingest_time < rows["g-retro"].ingest_time
    assert rows["g-retro"].applied_seq < rows["u-old"].applied_seq, "HR first within the batch"
    assert [r.event_id for r in store.events_for("ada")][-2:] == ["g-retro", "u-old"]
    consumed = [p for p in store.postings_for("ada") if p.cause_event_id == "u-old"]
    assert [(p.kind, p.grant_id) for p in consumed] == [("consume", "GR")], consumed
    report = verify_store(store, replay=True)
    assert report.findings == [], report.findings[:3]
