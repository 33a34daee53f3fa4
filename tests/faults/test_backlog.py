"""Both engines against the real broker: the startup backlog with grants
published days ahead and kills in the middle of it, history exactly once
through the history topic. Expected values come from the offline replay."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from compstream.publish import publish_events
from support.checks import (
    assert_history_exact,
    balance_mismatches,
    expected_counts,
    history_figures,
    sentinels,
    wait_balances,
    wait_quiet,
)
from support.faults import SESSION_TIMEOUT_S
from support.worker import WorkerProcess
from worker.core.scenario import LATENESS_S, START, scenario

pytestmark = pytest.mark.kafka
PARTITIONS = 4
ENGINE_ENV = {"COMPSTREAM_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S)}  # the engine: the `engine` fixture


def _worker(tmp_path, bootstrap, topics, group, **env) -> WorkerProcess:
    # The group names the changelog topic: one per test's topics, so a reused broker holds no old books.
    return WorkerProcess(tmp_path / "w", bootstrap, topics, group=f"{group}-{topics.prefix}", lateness_s=LATENESS_S,
                         partitions=PARTITIONS, extra_env={**ENGINE_ENV, **env})


def _settle(worker, bootstrap, topics, events):
    """Complete balances, then sentinel ticks so every posting is final, then
    stop (the embedded loader drains the history topic first)."""
    balances = wait_balances(bootstrap, topics.balances, expected_counts(events), 180, worker)
    ticks = sentinels(START + timedelta(days=90), PARTITIONS)
    publish_events(ticks, bootstrap, topics)
    wait_balances(bootstrap, topics.balances, expected_counts(ticks), 60, worker)
    wait_quiet(bootstrap, topics.balances, quiet_s=2, timeout_s=60)
    assert worker.stop() == 0, worker.diagnosis()
    return balances, ticks


def _history_exact(worker, events, ticks) -> dict:
    figures = history_figures(worker.env["COMPSTREAM_CLICKHOUSE_DSN"], events + ticks,
                              ticks[0].occurred_at - timedelta(seconds=LATENESS_S))
    assert_history_exact(figures)
    return figures


def test_startup_backlog_with_grants_ahead_and_kills_equals_the_replay(kafka_bootstrap, topics, tmp_path,
                                                                       reliability):
    published = scenario(seed=2026, engineers=110, usage_per_engineer=30, duplicates=40)
    events = [e for _, e in published]
    publish_events(events, kafka_bootstrap, topics)  # both source topics hold the whole backlog
    # Batches of 200: the backlog takes ~19 transactions, so both injected
    # crashes (before the 3rd, then the 5th commit of a run) hit the middle of it.
    worker = _worker(tmp_path, kafka_bootstrap, topics, "backlog", COMPSTREAM_BATCH_EVENTS_MAX="200")
    for crash_at in ("3", "5"):
        worker.env["COMPSTREAM_FAULT_CRASH_AFTER_HISTORY"] = crash_at
        worker.start()
        worker.wait_until(lambda: not worker.alive(), 120, f"the injected crash before commit {crash_at}")
        assert "fault injection: crashing before commit" in worker.log_path.read_text()
    worker.env.pop("COMPSTREAM_FAULT_CRASH_AFTER_HISTORY")
    worker.start()
    worker.wait_until(lambda: "restored" in worker.log_path.read_text(), 60, "a restore")
    time.sleep(0.5)
    worker.kill()  # kill -9 wherever it is
    t0 = time.monotonic()
    worker.start()
    balances, ticks = _settle(worker, kafka_bootstrap, topics, events)
    bad = balance_mismatches(balances, events)
    assert not bad, bad[:5]
    figures = _history_exact(worker, events, ticks)
    reliability.record(order=20, scenario="startup backlog, grants 0-3 days ahead",
                       events=len(events), faults="2 crashes before commit (mid-backlog) + kill -9", lost=0,
                       duplicated=figures["event_rows"] - figures["event_ids"], mismatched=len(bad),
                       recover_s=time.monotonic() - t0, notes=f"{figures['posting_rows']} postings")
