"""Messages the consumer hands over and acks without the agent processing them.

Faust does this with messages it fetched before a rebalance pause; the worker's
position records must bring them back, also when nothing arrives after them
(the tail of a partition) and when the first seek back is lost.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest

from compstream.publish import publish_events
from compstream.synth import START, generate
from support.checks import (
    LONG_LATENESS_S,
    balance_mismatches,
    expected_counts,
    history_figures,
    lost_events,
    sentinels,
    wait_balances,
)
from support.faults import ledger_only, worker_for

pytestmark = pytest.mark.kafka
PARTITIONS = 4


@pytest.mark.faust_only  # a fault of Faust's consumer; the transactional engine reads its committed offsets
def test_skipped_tail_is_re_read_even_when_the_first_seek_back_is_lost(kafka_bootstrap, topics, tmp_path,
                                                                         reliability):
    events = ledger_only(generate(engineers=30, usage_events=1_200, seed=94))
    # The first two batches are acked unprocessed, and so is every seek
    # back the stall watch makes on its first attempt for each partition
    # (four partitions per topic, two topics).
    worker = worker_for(tmp_path, kafka_bootstrap, topics, "skipped", PARTITIONS,
                        COMPSTREAM_FAULT_DROP_BATCHES="2",
                        COMPSTREAM_FAULT_LOSE_STALL_SEEKS=str(2 * PARTITIONS)).start()
    publish_events(events, kafka_bootstrap, topics)  # then nothing more arrives
    t0 = time.monotonic()
    balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 180, worker)
    recover_s = time.monotonic() - t0
    log = worker.log_path.read_text(errors="replace")
    assert "acking a batch of" in log, worker.diagnosis()  # the faults did happen …
    assert "this stall seek does not happen" in log, worker.diagnosis()
    assert "seeking back (attempt 2)" in log, worker.diagnosis()  # … and the retry recovered
    ticks = sentinels(START + timedelta(days=120), PARTITIONS)
    publish_events(ticks, kafka_bootstrap, topics)
    wait_balances(kafka_bootstrap, topics.balances, expected_counts(ticks), 120, worker)
    assert worker.stop() == 0, worker.log_tail()
    figures = history_figures(worker.env["COMPSTREAM_CLICKHOUSE_DSN"], events + ticks,
                              ticks[0].occurred_at - timedelta(seconds=LONG_LATENESS_S))
    bad = balance_mismatches(balances, events)
    reliability.record(
        order=8, scenario="consumer skips fetched messages (acked unprocessed), first seeks back lost",
        events=len(events), faults="2 batches acked unprocessed; first stall seek per partition lost",
        lost=lost_events(balances, expected_counts(events), figures),
        duplicated=figures["event_rows"] - figures["event_ids"], mismatched=len(bad), recover_s=recover_s,
        notes="position records + stall watch retried with backoff", figures=figures,
    )
    assert figures["event_rows"] == figures["event_ids"] == figures["expected_events"], figures
    assert bad == []


def _commit_lag(bootstrap: str, group: str, topic_names: list[str]) -> int:
    """Records on the source topics beyond the group's committed offsets
    (read without joining the group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topic_names for p in consumer.partitions_for_topic(t) or ()]
        return sum(end - (consumer.committed(tp) or 0) for tp, end in consumer.end_offsets(tps).items())
    finally:
        consumer.close()


@pytest.mark.faust_only
def test_commits_catch_up_after_the_consumer_skipped_and_was_sought_back(kafka_bootstrap, topics, tmp_path):
    """The consumer jumps 500 records ahead (Faust records the jump as a gap),
    the position guard seeks back and the records are processed. The group's
    commits must then follow. Without faust_compat.keep_commits_moving Faust's
    acked list held re-read offsets twice and each commit moved one offset;
    without the worker's re-commit, a re-read batch's fence commit left the
    offset at the batch's start (lag after 60 s: 7,197 / 1,016 records)."""
    # ~20k records per partition: more than one 1 MiB fetch, so records follow the skip.
    events = ledger_only(generate(engineers=40, usage_events=80_000, seed=95))
    publish_events(events, kafka_bootstrap, topics)  # a backlog: records follow the skip
    worker = worker_for(tmp_path, kafka_bootstrap, topics, "skipahead", PARTITIONS,
                        COMPSTREAM_FAULT_SKIP_AHEAD="500").start()
    balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 180, worker)
    log = worker.log_path.read_text(errors="replace")
    skipped = re.search(r"the consumer skipped (\d+) records", log)
    assert skipped and int(skipped.group(1)) >= 100, worker.diagnosis()
    assert "were not delivered" in log, worker.diagnosis()  # the guard saw the skip and sought back
    assert balance_mismatches(balances, events) == []
    group = worker.env["COMPSTREAM_WORKER_ID"]
    deadline = time.monotonic() + 60
    lag = _commit_lag(kafka_bootstrap, group, [topics.usage, topics.grants])
    while lag and time.monotonic() < deadline:
        time.sleep(1)
        lag = _commit_lag(kafka_bootstrap, group, [topics.usage, topics.grants])
    assert lag == 0, f"the group's commits stayed {lag} records behind processing"
    assert worker.stop() == 0, worker.log_tail()
