"""The transactional engine against the real broker: the startup backlog with
grants published days ahead and kills in the middle of it, a history store
outage that must not stop balances, and history exactly once through the
history topic. Expected values come from the offline replay."""

from __future__ import annotations

import time
import urllib.request
from datetime import timedelta

import pytest

from compstream.publish import publish_events
from support.checks import (
    balance_mismatches, expected_counts, history_figures, sentinels, wait_balances, wait_quiet,
)
from support.faults import SESSION_TIMEOUT_S
from support.http import http_json
from support.worker import WorkerProcess
from worker.core.scenario import LATENESS_S, START, scenario

pytestmark = [pytest.mark.kafka, pytest.mark.transactional_only]
PARTITIONS = 4
ENGINE_ENV = {"COMPSTREAM_ENGINE": "transactional",
              "COMPSTREAM_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S)}


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
    assert figures["event_rows"] == figures["event_ids"] == figures["expected_events"], figures
    assert figures["posting_rows"] == figures["posting_keys"] == figures["expected_postings"], figures
    assert figures["engineers_with_wrong_postings"] == 0, figures
    return figures


def _metrics(port: int) -> dict:
    """`GET /metrics` as {(name, labels): value} (Prometheus text format)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


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


def test_a_history_outage_delays_history_but_not_balances(kafka_bootstrap, topics, tmp_path):
    published = scenario(seed=7, engineers=30, usage_per_engineer=20)
    events = [e for _, e in published]
    down = tmp_path / "history-down"
    down.write_text("down")
    worker = _worker(tmp_path, kafka_bootstrap, topics, "outage", COMPSTREAM_FAULT_HISTORY_DOWN_FILE=str(down))
    worker.start()
    publish_events(events, kafka_bootstrap, topics)
    balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 120, worker)
    assert not balance_mismatches(balances, events)
    assert "history write failed" in worker.log_path.read_text()  # the loader was held off meanwhile
    metrics = _metrics(worker.web_port)
    usage_ids = {e.event_id for e in events if e.type == "usage"}
    assert metrics[('compstream_events_total', (('outcome', 'applied'), ('type', 'usage')))] == len(usage_ids)
    assert metrics[('compstream_transactions_total', (('result', 'commit'),))] >= 1
    status, body = http_json(worker.web_port, f"/balances/{events[-1].engineer_id}")
    assert status == 200 and body["engineer_id"] == events[-1].engineer_id
    down.unlink()
    _, ticks = _settle(worker, kafka_bootstrap, topics, events)
    _history_exact(worker, events, ticks)
