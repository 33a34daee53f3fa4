"""N transactional workers, one history: two workers of one group (separate
data dirs, the source partitions split between them) publish history rows on
the history topic, and ONE `compstream sink` loads it into one store, while a
worker and then the sink are killed with -9 mid-backlog and restarted.

One sink per store: the embedded store (chdb) can be opened by one process at
a time, and the loader takes every history partition (docs/engines.md). The
expected side is the offline replay of the published events."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest
from kafka import KafkaConsumer, TopicPartition

from compstream.history import open_history
from compstream.publish import publish_events
from compstream.worker.core.checkpoint import history_topic
from support.checks import (
    balance_mismatches, expected_counts, history_figures, sentinels, wait_balances, wait_quiet,
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


def _log_count(process: WorkerProcess, mark: str) -> int:
    try:
        return process.log_path.read_text(errors="replace").count(mark)
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
    a.wait_until(lambda: _log_count(a, "batch of") >= 2, 180, "worker a's second transaction")
    a.kill()  # kill -9 mid-backlog: its open transaction (and history record) is aborted
    a.start()
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
    assert _log_count(b, "batch of") > 0, "worker b never took a partition"
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
    assert figures["event_rows"] == figures["event_ids"] == figures["expected_events"], figures
    assert figures["posting_rows"] == figures["posting_keys"] == figures["expected_postings"], figures
    assert figures["engineers_with_wrong_postings"] == 0, figures
    audit = subprocess.run([sys.executable, "-m", "compstream.cli.main", "audit", "verify", "--replay", "--json",
                            "--dsn", dsn], env=sink.env, capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr[-2000:]
