"""Every reader of the worker's output topics (the demo's and tests'
readback, `compstream diff`, `dlq`, `rebuild`, `hr history`) sees committed
records only: the transactional engine writes balances, dead letters and
history in transactions, and a record of an aborted or still open one was
never a balance. Against the real broker, with a real transactional
producer (the engine's own configuration)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from confluent_kafka import Producer

from compstream.codec import decode_record, encode_record
from compstream.readback import read_records
from compstream.replay.kafka_source import open_consumer, read_ranges, resolve_ranges
from compstream.worker.engines.kafka_sides import producer_config

pytestmark = pytest.mark.kafka


def _record(n: int) -> bytes:
    return encode_record("DeadLetter", {
        "source_topic": "t", "source_partition": 0, "source_offset": n, "key": None, "raw": b"",
        "stage": "s", "reason": f"record {n}", "received_at": datetime(2026, 12, 1, tzinfo=timezone.utc)})


def test_readers_see_committed_records_only(kafka_bootstrap, topics):
    topic = topics.dead_letters
    producer = Producer(producer_config(kafka_bootstrap, f"readers-{topics.prefix}"))
    producer.init_transactions(30)
    for n, commit in ((0, True), (1, False), (2, True)):
        producer.begin_transaction()
        producer.produce(topic, _record(n), b"k", partition=0)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    producer.begin_transaction()  # left open while the readers read
    producer.produce(topic, _record(3), b"k", partition=0)
    producer.flush(30)
    try:
        seen = [r["source_offset"] for _, _, r in read_records(kafka_bootstrap, topic, timeout_s=5)]
        assert seen == [0, 2]
        consumer = open_consumer(kafka_bootstrap)
        try:
            ranges = resolve_ranges(consumer, [topic])
            seen = [decode_record(r.value)[1]["source_offset"] for r in read_ranges(consumer, ranges, 20)]
        finally:
            consumer.close()
        # The range ends at the open transaction (the last stable offset), and reading it ends.
        assert seen == [0, 2]
    finally:
        producer.abort_transaction(30)
