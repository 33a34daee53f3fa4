"""Busy books on the real broker: engineers with hundreds of usage events a
day get their past days' ids sealed into changelog segments of their own
(worker/book_changelog.py). A worker killed mid-backlog restores them from
the changelog; duplicates of events of sealed days, republished after the
restart, are recognised; balances and history equal the replay."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest

from compstream.publish import publish_events
from compstream.synth import START, generate
from support.checks import (
    assert_history_exact,
    balance_mismatches,
    changelog_keys,
    expected_counts,
    history_figures,
    lost_events,
    sentinels,
    wait_balances,
    wait_quiet,
)
from support.faults import SESSION_TIMEOUT_S, ledger_only
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka
PARTITIONS = 4  # as the `topics` fixture made them
LATENESS_S = 3600  # the watermark passes each day an hour after it ends


def test_sealed_days_survive_a_kill_and_still_catch_duplicates(kafka_bootstrap, topics, tmp_path, reliability):
    # 4 engineers x ~400 usage events a day for 3 days: each day past the
    # watermark holds more than SEAL_RECORDS_MIN (64) ids.
    events = ledger_only(generate(engineers=4, usage_events=4_800, seed=93, usage_span=timedelta(days=3)))
    rng = random.Random(93)
    group = f"busy-{topics.prefix}"
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=group, lateness_s=LATENESS_S,
                           partitions=PARTITIONS,
                           extra_env={"COMPSTREAM_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
                                      "COMPSTREAM_BATCH_EVENTS_MAX": "200"})  # many batches: many book writes
    first = [e for e in events if e.type != "usage" or e.event_time < START + timedelta(days=2, hours=12)]
    rest = events[len(first):]
    assert [e.event_id for e in events[:len(first)]] == [e.event_id for e in first]  # usage in time order
    publish_events(first, kafka_bootstrap, topics)  # a backlog when the worker starts
    worker.start()
    delay = rng.uniform(SESSION_TIMEOUT_S + 2, SESSION_TIMEOUT_S + 6)  # joined and mid-backlog
    time.sleep(delay)
    worker.kill()
    worker.start()
    wait_balances(kafka_bootstrap, topics.balances, expected_counts(first), 240, worker)
    changelog = f"{group}-books-changelog"
    segments = [k for k in changelog_keys(kafka_bootstrap, changelog, PARTITIONS) if b"\x1f" in k]
    assert segments, "no book was sealed: the scenario does not test segments"
    worker.stop()
    worker.start()  # a restore from heads and segments
    usage = [e for e in first if e.type == "usage" and e.event_time < START + timedelta(days=2)]
    again = rng.sample(usage, 300)  # events of sealed days, republished
    t0 = time.monotonic()
    publish_events(again + rest, kafka_bootstrap, topics)
    balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 240, worker)
    recover_s = time.monotonic() - t0
    ticks = sentinels(START + timedelta(days=10), PARTITIONS)
    publish_events(ticks, kafka_bootstrap, topics)
    wait_balances(kafka_bootstrap, topics.balances, expected_counts(ticks), 60, worker)
    wait_quiet(kafka_bootstrap, topics.balances, quiet_s=3, timeout_s=60)
    assert worker.stop() == 0, worker.log_tail()
    bad = balance_mismatches(balances, events)
    figures = history_figures(worker.env["COMPSTREAM_CLICKHOUSE_DSN"], events + ticks,
                              ticks[0].occurred_at - timedelta(seconds=LATENESS_S))
    reliability.record(
        order=21, scenario="busy books: sealed days, kill -9, duplicates of sealed days", events=len(events),
        faults="SIGKILL mid-backlog, a restart, 300 duplicates of sealed days",
        lost=lost_events(balances, expected_counts(events), figures),
        duplicated=figures["event_rows"] - figures["event_ids"], mismatched=len(bad), recover_s=recover_s,
        notes=f"kill after {delay:.1f} s; {len(set(segments))} segment records in the changelog",
        figures=figures,
    )
    assert bad == []
    assert_history_exact(figures)
    assert {e: b["events_applied"] for e, b in balances.items()} == expected_counts(events)
