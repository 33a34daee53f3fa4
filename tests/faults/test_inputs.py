"""Duplicate deliveries and poison messages."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest

from compstream.config import USAGE_AHEAD_S_MAX
from compstream.publish import publish_events
from compstream.readback import read_records
from compstream.synth import START, generate
from support.checks import (
    LONG_LATENESS_S,
    balance_mismatches,
    expected_counts,
    history_figures,
    lost_events,
    sentinels,
    wait_balances,
    wait_quiet,
)
from support.faults import ledger_only, poison_records, publish_poison, worker_for

pytestmark = pytest.mark.kafka
PARTITIONS = 4


def test_every_event_delivered_one_to_three_times(kafka_bootstrap, topics, tmp_path, reliability):
    events = ledger_only(generate(engineers=40, usage_events=2_000, seed=93))
    rng = random.Random(93)
    deliveries = [e for e in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)  # duplicates arrive out of order, like producer retries + a re-ingest
    worker = worker_for(tmp_path, kafka_bootstrap, topics, "dups", PARTITIONS).start()
    publish_events(deliveries, kafka_bootstrap, topics)
    t0 = time.monotonic()
    balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 240, worker)
    recover_s = time.monotonic() - t0
    publish_events(events, kafka_bootstrap, topics)  # and the whole export re-ingested once more
    ticks = sentinels(START + timedelta(days=120), PARTITIONS)
    publish_events(ticks, kafka_bootstrap, topics)
    wait_balances(kafka_bootstrap, topics.balances, expected_counts(ticks), 120, worker)
    # One tick is enough: the sweep of the batch that reads the grants topic's
    # last re-ingested messages is no longer held back by that backlog.
    wait_quiet(kafka_bootstrap, topics.balances, quiet_s=3, timeout_s=60)
    final = {e: b for e, b in read_latest(kafka_bootstrap, topics.balances).items() if e in balances}
    assert worker.stop() == 0, worker.log_tail()
    figures = history_figures(worker.env["COMPSTREAM_CLICKHOUSE_DSN"], events + ticks,
                              ticks[0].occurred_at - timedelta(seconds=LONG_LATENESS_S))
    bad = balance_mismatches(final, events)
    reliability.record(
        order=3, scenario="duplicates (1–3 deliveries + re-ingest)",
        events=f"{len(events)} unique / {len(deliveries) + len(events)} delivered",
        faults="each event 1–3×, shuffled, then all again",
        lost=lost_events(final, expected_counts(events), figures),
        duplicated=figures["event_rows"] - figures["event_ids"], mismatched=len(bad), recover_s=recover_s,
        notes="duplicates dropped by per-engineer event-id memory in the books", figures=figures,
    )
    assert bad == []
    assert figures["event_rows"] == figures["event_ids"] == figures["expected_events"], figures
    assert figures["posting_rows"] == figures["posting_keys"] == figures["expected_postings"], figures
    assert figures["engineers_with_wrong_postings"] == 0


def read_latest(bootstrap: str, topic: str) -> dict:
    out = {}
    for _, _, record in read_records(bootstrap, topic, timeout_s=0):
        out[record["engineer_id"]] = record
    return out


def test_poison_messages_become_dead_letters(kafka_bootstrap, topics, tmp_path, reliability):
    events = ledger_only(generate(engineers=20, usage_events=600, seed=94))
    poison = poison_records(events)
    # The deployment's bound on usage dated ahead of its record (test workers allow the most).
    worker = worker_for(tmp_path, kafka_bootstrap, topics, "poison", PARTITIONS,
                        COMPSTREAM_USAGE_AHEAD_S_MAX=str(USAGE_AHEAD_S_MAX)).start()
    publish_events(events[:300], kafka_bootstrap, topics)
    wait_balances(kafka_bootstrap, topics.balances, expected_counts(events[:300]), 120, worker)
    publish_poison(kafka_bootstrap, topics, poison)
    publish_events(events[300:], kafka_bootstrap, topics)
    t0 = time.monotonic()
    balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 120, worker)
    recover_s = time.monotonic() - t0
    dead = read_records(kafka_bootstrap, topics.dead_letters, until=lambda r: len(r) >= len(poison), timeout_s=30)
    assert worker.alive(), "the worker died on poison input"
    assert worker.stop() == 0, worker.log_tail()
    got = sorted((r["raw"], r["stage"]) for _, _, r in dead)
    assert got == sorted((raw, stage) for _, _, raw, stage in poison)
    assert all(r["reason"] and r["source_topic"] in (topics.usage, topics.grants) for _, _, r in dead)
    bad = balance_mismatches(balances, events)
    figures = history_figures(worker.env["COMPSTREAM_CLICKHOUSE_DSN"], events, None)
    from compstream.history import open_history

    store = open_history(worker.env["COMPSTREAM_CLICKHOUSE_DSN"])
    try:
        stored_dead = sorted((r.raw, r.stage) for r in store.dead_letters())
    finally:
        store.close()
    reliability.record(
        order=4, scenario="poison messages", events=f"{len(events)} good + {len(poison)} poison",
        faults="random bytes, unknown schema, non-event schema, negative amount, conflicting id, wrong key, "
               "usage dated decades ahead",
        lost=lost_events(balances, expected_counts(events), figures),
        duplicated=figures["event_rows"] - figures["event_ids"], mismatched=len(bad), recover_s=recover_s,
        notes=f"{len(dead)} dead letters with raw bytes + reason; worker never restarted", figures=figures,
    )
    assert stored_dead == sorted((raw, stage) for _, _, raw, stage in poison)
    assert bad == []
    assert figures["event_rows"] == figures["event_ids"] == figures["expected_events"]
