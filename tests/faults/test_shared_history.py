"""N transactional workers, one history: two workers of one group (separate
data dirs, the source partitions split between them) publish history rows on
the history topic, and ONE `compstream sink` loads it into one store, while a
worker and then the sink are killed with -9 mid-backlog and restarted.

The embedded store (chdb) opens in one process at a time, so these real
processes use one sink; sinks on one group split the history partitions,
which the second test shows with two loaders on one shared store
(docs/engines.md). The expected side is the offline replay of the published
events."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from kafka import KafkaConsumer, TopicPartition

from compstream.history import open_history
from compstream.publish import publish_events
from compstream.worker.core.checkpoint import history_topic
from support.checks import (
    assert_history_exact,
    balance_mismatches,
    expected_counts,
    history_figures,
    sentinels,
    wait_balances,
    wait_quiet,
)
from support.faults import SESSION_TIMEOUT_S, poison_records, publish_poison
from support.worker import WorkerProcess
from worker.core.scenario import LATENESS_S, START, scenario

pytestmark = [pytest.mark.kafka, pytest.mark.transactional_only]
PARTITIONS = 4
# The unique key of each history table (its ReplacingMergeTree sorting key):
# count() = uniqExact(key) means nothing was loaded twice.
TABLE_KEYS = {
    "events": "kafka_topic, kafka_partition, kafka_offset, event_id",
    "postings": "engineer_id, seq, hash",
    "dead_letters": "kafka_topic, kafka_partition, kafka_offset, stage",
    "leaderboard_windows": "window_kind, dimension, window_start, rank, revision",
    "watermarks": "partition, final_through",
    "digests": "period, computed_at, digest",
}


_APPLIED_BATCH = re.compile(r"batch of \d+: [1-9]\d* applied")


def _log_count(process: WorkerProcess, mark: str) -> int:
    try:
        return process.log_path.read_text(errors="replace").count(mark)
    except FileNotFoundError:
        return 0


def _applied_batches(process: WorkerProcess) -> int:
    """Committed batches that applied events (not the idle ones)."""
    try:
        return len(_APPLIED_BATCH.findall(process.log_path.read_text(errors="replace")))
    except FileNotFoundError:
        return 0


def _loaded_through_end(bootstrap: str, topic: str, group: str) -> bool:
    """The sink's committed offsets are past the last committed record of
    every history partition (transaction markers have offsets too, so the
    topic's end offset is not the mark)."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                           isolation_level="read_committed", consumer_timeout_ms=2000)
    watcher = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        last: dict[int, int] = {}
        for message in reader:
            last[message.partition] = message.offset
        return all((watcher.committed(TopicPartition(topic, p)) or 0) > offset for p, offset in last.items())
    finally:
        reader.close()
        watcher.close()


def test_two_workers_one_sink_with_kills_load_every_row_once(kafka_bootstrap, topics, tmp_path):
    published = scenario(seed=25, engineers=80, usage_per_engineer=25, duplicates=40)
    events = [e for _, e in published]
    poison = poison_records(events)
    publish_events(events, kafka_bootstrap, topics)  # the backlog, duplicates of every kind included
    publish_poison(kafka_bootstrap, topics, poison)
    group = f"shared-{topics.prefix}"
    env = {"COMPSTREAM_ENGINE": "transactional", "COMPSTREAM_HISTORY_SINK": "external",
           "COMPSTREAM_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
           "COMPSTREAM_BATCH_EVENTS_MAX": "100"}  # ~25 transactions: the kills land mid-backlog

    def process(name: str, **kw) -> WorkerProcess:
        return WorkerProcess(tmp_path / name, kafka_bootstrap, topics, group=group, lateness_s=LATENESS_S,
                             partitions=PARTITIONS, extra_env=env, **kw)

    a, b, sink = process("a"), process("b"), process("sink", command=("sink",))
    # The sink's first run dies right after its 2nd store write, before that
    # write's offset commit: the restarted sink reads those rows again.
    sink.env["COMPSTREAM_FAULT_CRASH_AFTER_HISTORY"] = "2"
    for p in (a, b, sink):
        p.start()
    # Whichever worker first commits a second batch with events in it is
    # killed: the other may join the group late and find nothing left to do.
    victim = a.wait_until(lambda: next((w for w in (a, b) if _applied_batches(w) >= 2), None), 180,
                          "a worker's second transaction with events")
    victim.kill()  # kill -9 mid-backlog: its open transaction (and history record) is aborted
    victim.start()
    deadline = time.monotonic() + 180
    while sink.alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not sink.alive() and "fault injection" in sink.log_path.read_text(), sink.diagnosis()
    del sink.env["COMPSTREAM_FAULT_CRASH_AFTER_HISTORY"]
    sink.start()
    sink.wait_until(lambda: _log_count(sink, "history loaded:") >= 2, 180, "a load by the restarted sink")
    sink.kill()  # and kill -9 wherever it is
    sink.start()

    balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 300, a)
    ticks = sentinels(START + timedelta(days=90), PARTITIONS)  # every posting final
    publish_events(ticks, kafka_bootstrap, topics)
    wait_balances(kafka_bootstrap, topics.balances, expected_counts(ticks), 120, a)
    wait_quiet(kafka_bootstrap, topics.balances, quiet_s=2, timeout_s=60)
    assert _log_count(a, "batch of") > 0 and _log_count(b, "batch of") > 0, "a worker never took a partition"
    assert a.stop() == 0, a.diagnosis()
    assert b.stop() == 0, b.diagnosis()
    sink.wait_until(lambda: _loaded_through_end(kafka_bootstrap, history_topic(topics), f"{group}-history-sink"),
                    120, "the sink to load the whole history topic")
    assert sink.stop() == 0, sink.diagnosis()

    assert balance_mismatches(balances, events) == []
    dsn = sink.env["COMPSTREAM_CLICKHOUSE_DSN"]
    store = open_history(dsn)
    try:
        counts = {table: tuple(store.query_rows(f"SELECT count(), uniqExact({key}) FROM {store.database}.{table}")[0])
                  for table, key in TABLE_KEYS.items()}
        stored_dead = sorted((r.raw, r.stage) for r in store.dead_letters())
    finally:
        store.close()
    doubled = {table: c for table, c in counts.items() if c[0] != c[1]}
    assert not doubled, f"rows loaded twice (count, distinct keys): {doubled}; all: {counts}"
    assert counts["leaderboard_windows"][0] > 0 and counts["watermarks"][0] > 0, counts
    assert stored_dead == sorted((raw, stage) for _, _, raw, stage in poison)
    figures = history_figures(dsn, events + ticks, ticks[0].occurred_at - timedelta(seconds=LATENESS_S))
    assert_history_exact(figures)
    audit = subprocess.run([sys.executable, "-m", "compstream.cli.main", "audit", "verify", "--replay", "--json",
                            "--dsn", dsn], env=sink.env, capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr[-2000:]


def test_two_sinks_on_one_group_split_the_history_and_load_each_row_once(kafka_bootstrap, topics, tmp_path):
    """N sinks need a store they can share (a ClickHouse server; chdb opens in
    one process only), so the two loaders here run in this process on one
    in-memory store. They split the history partitions; when one leaves, the
    other takes its partitions over from the committed offsets."""
    from compstream.history.memory import MemoryHistoryStore
    from compstream.worker.history_loader import HistoryLoader

    published = scenario(seed=26, engineers=60, usage_per_engineer=20, duplicates=20)
    events = [e for _, e in published]
    group = f"split-{topics.prefix}"
    env = {"COMPSTREAM_ENGINE": "transactional", "COMPSTREAM_HISTORY_SINK": "external",
           "COMPSTREAM_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S), "COMPSTREAM_BATCH_EVENTS_MAX": "100"}
    a, b = (WorkerProcess(tmp_path / name, kafka_bootstrap, topics, group=group, lateness_s=LATENESS_S,
                          partitions=PARTITIONS, extra_env=env).start() for name in ("a", "b"))
    a.wait_until(lambda: _log_count(a, "transactional engine ready") >= 1, 120, "worker a")  # topics made
    store = MemoryHistoryStore()
    store.migrate()
    sink_group = f"{group}-history-sink"
    loaders = [HistoryLoader(kafka_bootstrap, history_topic(topics), sink_group, store, shared=True,
                             session_timeout_s=SESSION_TIMEOUT_S) for _ in range(2)]
    threads = [threading.Thread(target=loader.run, daemon=True) for loader in loaders]
    try:
        for thread in threads:
            thread.start()
        a.wait_until(lambda: all(loader.partitions_assigned for loader in loaders), 120, "both sinks assigned")
        assert sorted(p for loader in loaders for p in loader.partitions_assigned) == list(range(PARTITIONS))
        for n in range(0, len(events), 300):  # the backlog arrives while both sinks own partitions
            publish_events(events[n:n + 300], kafka_bootstrap, topics)
        a.wait_until(lambda: all(loader.loaded_records > 0 for loader in loaders), 180, "both sinks loading")
        loaders[1].stop_event.set()  # one leaves mid-backlog: the other takes its partitions over
        threads[1].join(timeout=60)
        loaders[1].consumer.close()
        a.wait_until(lambda: len(loaders[0].partitions_assigned) == PARTITIONS, 60, "the takeover")

        balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 300, a)
        ticks = sentinels(START + timedelta(days=90), PARTITIONS)
        publish_events(ticks, kafka_bootstrap, topics)
        wait_balances(kafka_bootstrap, topics.balances, expected_counts(ticks), 120, a)
        wait_quiet(kafka_bootstrap, topics.balances, quiet_s=2, timeout_s=60)
        assert a.stop() == 0, a.diagnosis()
        assert b.stop() == 0, b.diagnosis()
        deadline = time.monotonic() + 120
        while not _loaded_through_end(kafka_bootstrap, history_topic(topics), sink_group):
            assert time.monotonic() < deadline and threads[0].is_alive(), "the sink did not load the whole topic"
            time.sleep(0.5)
    finally:
        for loader, thread in zip(loaders, threads, strict=True):
            loader.stop_event.set()
            thread.join(timeout=60)
            try:
                loader.consumer.close()
            except RuntimeError:  # closed already (the one that left)
                pass

    assert balance_mismatches(balances, events) == []
    counts = {table: (len(store.tables[table]), len({row.key() for row in store.tables[table]}))
              for table in TABLE_KEYS}
    doubled = {table: c for table, c in counts.items() if c[0] != c[1]}
    assert not doubled, f"rows loaded twice (rows, distinct keys): {doubled}; all: {counts}"
    figures = history_figures(store, events + ticks, ticks[0].occurred_at - timedelta(seconds=LATENESS_S))
    assert_history_exact(figures)
