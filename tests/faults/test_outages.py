"""A ClickHouse outage and a broker restart in the middle of the stream."""

from __future__ import annotations

import time
import urllib.request

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from compstream.broker import runtime
from compstream.broker.topics import ensure_topics
from compstream.config import Topics
from compstream.publish import publish_events
from compstream.synth import generate
from support.checks import balance_mismatches, expected_counts, lost_events, wait_balances
from support.faults import SOAK, finalize_and_stop, ledger_only, worker_for
from support.http import http_json
from support.kafka import free_port, unique_topics

pytestmark = pytest.mark.kafka
PARTITIONS = 4
OUTAGE_S = 60 if SOAK else 12


def committed(bootstrap: str, group: str, topics: Topics) -> dict:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()
            if tp.topic in (topics.usage, topics.grants)}


def wait_committed_to_end(bootstrap: str, group: str, topics: Topics, timeout_s: float, worker) -> dict:
    """Until the group's committed offset of every non-empty source partition
    is that partition's end (everything published so far is committed)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in (topics.usage, topics.grants)
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = {(tp.topic, tp.partition): end for tp, end in consumer.end_offsets(tps).items() if end}
    finally:
        consumer.close()
    deadline = time.monotonic() + timeout_s
    got: dict = {}
    while time.monotonic() < deadline:
        got = committed(bootstrap, group, topics)
        if all(got.get(tp) == end for tp, end in ends.items()):
            return got
        if not worker.alive():
            raise AssertionError(f"worker died while waiting for its commit\n{worker.diagnosis()}")
        time.sleep(0.2)
    raise AssertionError(f"offsets not committed to the end after {timeout_s}s: committed {got}, ends {ends}")


def _metrics(port: int) -> dict:
    """`GET /metrics` as {(name, labels): value} (Prometheus text format)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_history_outage_delays_history_but_not_balances(kafka_bootstrap, topics, tmp_path, reliability):
    """History reaches the store through the history topic, so a store outage
    holds back only the loader: balances, offsets and the web view go on."""
    events = ledger_only(generate(engineers=30, usage_events=1_500, seed=95))
    before, during = events[:700], events[700:]
    down = tmp_path / "clickhouse-down"
    worker = worker_for(tmp_path, kafka_bootstrap, topics, "outage", PARTITIONS,
                        COMPSTREAM_FAULT_HISTORY_DOWN_FILE=str(down)).start()
    group = worker.env["COMPSTREAM_WORKER_ID"]
    publish_events(before, kafka_bootstrap, topics)
    wait_balances(kafka_bootstrap, topics.balances, expected_counts(before), 120, worker)
    down.touch()  # ClickHouse is now "down"
    t0 = time.monotonic()
    publish_events(during, kafka_bootstrap, topics)
    balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 120, worker)
    balances_s = time.monotonic() - t0
    wait_committed_to_end(kafka_bootstrap, group, topics, 60, worker)
    assert worker.alive(), "the worker died during the outage"
    # The loader (a process of its own, which may still be starting) is held off.
    worker.wait_until(lambda: "history write failed" in worker.log_path.read_text(), 60,
                      "the history loader to meet the outage")
    metrics = _metrics(worker.web_port)
    usage_ids = {e.event_id for e in events if e.type == "usage"}
    assert metrics[("compstream_events_total", (("outcome", "applied"), ("type", "usage")))] == len(usage_ids)
    assert metrics[("compstream_transactions_total", (("result", "commit"),))] >= 1
    assert metrics[("compstream_changelog_book_bytes_total", ())] > 0
    # 30 books touched over many batches: later batches take them from the cache.
    assert metrics[("compstream_book_cache_total", (("result", "hit"),))] > 0
    assert 1 <= metrics[("compstream_book_cache_books", ())] <= 30
    # Rows wait in the topic (the gauge is refreshed every few seconds).
    worker.wait_until(lambda: _metrics(worker.web_port)[("compstream_history_sink_lag_records", ())] > 0, 30,
                      "the history sink lag gauge to show the rows held back")
    status, body = http_json(worker.web_port, f"/balances/{events[-1].engineer_id}")
    assert status == 200 and body["engineer_id"] == events[-1].engineer_id
    time.sleep(max(0.0, OUTAGE_S - balances_s))
    down.unlink()  # back up
    bad = balance_mismatches(balances, events)
    figures = finalize_and_stop(worker, kafka_bootstrap, topics, events, PARTITIONS)
    reliability.record(
        order=5, scenario="ClickHouse unavailable", events=len(events),
        faults=f"every history write fails for >= {OUTAGE_S} s",
        lost=lost_events(balances, expected_counts(events), figures),
        duplicated=figures["event_rows"] - figures["event_ids"], mismatched=len(bad),
        recover_s=balances_s,
        notes="balances and offsets kept moving during the outage (recover = time to all balances); "
              "history loaded after it",
        figures=figures,
    )
    assert bad == []


def test_broker_restart_mid_stream(tmp_path, reliability):
    # Its own broker: restarting the session broker would disturb other tests.
    data_dir = tmp_path / "kafka"
    port, controller = free_port(), free_port()
    info = runtime.start(data_dir, port=port, controller_port=controller, partitions=PARTITIONS, timeout_s=120)
    bootstrap = info.bootstrap
    topics = unique_topics("broker-restart")
    worker = None
    try:
        ensure_topics(bootstrap, topics, PARTITIONS)
        events = ledger_only(generate(engineers=30, usage_events=1_500, seed=96))
        first, second = events[:700], events[700:]
        worker = worker_for(tmp_path, bootstrap, topics, "restart", PARTITIONS).start()
        publish_events(first, bootstrap, topics)
        wait_balances(bootstrap, topics.balances, expected_counts(first), 120, worker)
        runtime.stop(data_dir)
        time.sleep(5)
        info = runtime.start(data_dir, port=port, controller_port=controller, partitions=PARTITIONS, timeout_s=120)
        t0 = time.monotonic()
        publish_events(second, bootstrap, topics)
        balances = wait_balances(bootstrap, topics.balances, expected_counts(events), 240, worker)
        recover_s = time.monotonic() - t0
        bad = balance_mismatches(balances, events)
        figures = finalize_and_stop(worker, bootstrap, topics, events, PARTITIONS)
        reliability.record(
            order=6, scenario="broker restart mid-stream", events=len(events),
            faults="broker stopped (SIGTERM) for 5 s, restarted",
            lost=lost_events(balances, expected_counts(events), figures),
            duplicated=figures["event_rows"] - figures["event_ids"], mismatched=len(bad), recover_s=recover_s,
            notes="the same worker process reconnected by itself", figures=figures,
        )
        assert bad == []
    finally:
        if worker is not None:
            worker.kill()
        runtime.stop(data_dir)
