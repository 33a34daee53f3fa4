"""The worker's publisher against the real broker: everything it sends is
delivered in order per partition, and a record the broker refuses makes
`delivered()` raise (Faust's own `Topic.send` would only log it)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer

import compstream.worker.engines.faust.publisher as publisher_module
from compstream.broker.topics import TopicSpec, ensure_specs
from compstream.worker.core.ports import OutRecord
from compstream.worker.engines.faust.publisher import Publisher
from compstream.worker.processor import partition_of

pytestmark = pytest.mark.kafka


def _records(topic: str, pairs) -> list[OutRecord]:
    """Records the way a checkpoint holds them: no partition, the key's is used."""
    return [OutRecord(topic, key, value) for key, value in pairs]


async def _publish(bootstrap: str, topic: str, partitions: int, batches: list[list[tuple[bytes, bytes]]],
                   batch_bytes: int = 64 * 1024) -> list:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=batch_bytes)
    await producer.start()
    try:
        # Keys are engineer ids in the worker; partition_of is Kafka's default partitioner.
        publisher = Publisher(lambda: producer, lambda name, key: partition_of(key.decode(), partitions))
        outcomes = []
        for records in batches:
            await publisher.send_records(_records(topic, records))
            try:
                outcomes.append(await publisher.delivered())
            except Exception as exc:  # the outcome under test
                outcomes.append(exc)
        return outcomes
    finally:
        await producer.stop()


def _read_all(bootstrap: str, topic: str, count: int) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        records = []
        for record in consumer:
            records.append(record)
            if len(records) >= count:
                break
        return records
    finally:
        consumer.close()


def _check_in_order(bootstrap: str, topic: str, batches, partitions: int) -> None:
    count = sum(len(b) for b in batches)
    records = _read_all(bootstrap, topic, count)
    assert len(records) == count
    by_key = defaultdict(list)
    for r in records:
        assert r.partition == partition_of(r.key.decode(), partitions)
        by_key[r.key].append(r.value)
    for key, values in by_key.items():
        assert values == [v for batch in batches for k, v in batch if k == key], key


def test_every_record_is_delivered_in_order_per_key(kafka_bootstrap):
    topic = f"pub-{uuid.uuid4().hex[:8]}"
    ensure_specs(kafka_bootstrap, {topic: TopicSpec(4, {})})
    batches = [[(f"k{i % 37}".encode(), f"{b}:{i}".encode()) for i in range(2_000)] for b in range(3)]
    outcomes = asyncio.run(_publish(kafka_bootstrap, topic, 4, batches))
    assert all(isinstance(n, int) and n >= 4 for n in outcomes), outcomes  # a batch or more per partition
    _check_in_order(kafka_bootstrap, topic, batches, 4)


def test_records_larger_than_a_batch_keep_their_place(kafka_bootstrap):
    topic = f"pub-big-{uuid.uuid4().hex[:8]}"
    ensure_specs(kafka_bootstrap, {topic: TopicSpec(2, {})})
    batch = [(f"k{i % 5}".encode(), (f"{i}:".encode() + b"z" * (3000 if i % 7 == 0 else 10)))
             for i in range(200)]
    outcomes = asyncio.run(_publish(kafka_bootstrap, topic, 2, [batch], batch_bytes=1024))
    assert isinstance(outcomes[0], int) and outcomes[0] > 2, outcomes
    _check_in_order(kafka_bootstrap, topic, [batch], 2)


def test_a_record_the_broker_refuses_makes_delivered_raise(kafka_bootstrap):
    topic = f"pub-small-{uuid.uuid4().hex[:8]}"
    # The producer accepts 4 KiB; this topic's broker-side limit is 1 KiB.
    ensure_specs(kafka_bootstrap, {topic: TopicSpec(1, {"max.message.bytes": "1024"})})
    ok = [(b"a", b"x" * 10)]
    too_big = [(b"b", b"y" * 4096)]
    outcomes = asyncio.run(_publish(kafka_bootstrap, topic, 1, [ok, too_big, ok]))
    assert outcomes[0] == 1 and outcomes[2] == 1
    assert isinstance(outcomes[1], Exception)
    assert "TooLarge" in type(outcomes[1]).__name__, repr(outcomes[1])


def test_a_topic_created_after_the_producer_started_gets_keyed_records(kafka_bootstrap):
    """The worker's partitioner is the producer's own, which knows only the
    topics in its metadata; a topic created after start must still work."""
    topic = f"pub-late-{uuid.uuid4().hex[:8]}"

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            ensure_specs(kafka_bootstrap, {topic: TopicSpec(3, {})})
            # What Faust's key_partition does (worker: Publisher.for_app).
            publisher = Publisher(lambda: producer,
                                  lambda name, key: producer._partition(name, None, None, None, key, None))
            await publisher.send_records(_records(topic, [(f"k{i}".encode(), b"v") for i in range(50)]))
            return await publisher.delivered()
        finally:
            await producer.stop()

    assert asyncio.run(run()) >= 1
    records = _read_all(kafka_bootstrap, topic, 50)
    assert len(records) == 50
    assert {r.partition for r in records} == {0, 1, 2}


def test_partition_memo_is_bounded_and_keeps_records_on_their_partitions(kafka_bootstrap, monkeypatch):
    """With a memo bound of 5 keys over 37 keys, records still land on their
    key's partition (the memo is emptied and refilled, never wrong)."""
    monkeypatch.setattr(publisher_module, "KEYS_REMEMBERED_MAX", 5)
    topic = f"pub-memo-{uuid.uuid4().hex[:8]}"
    ensure_specs(kafka_bootstrap, {topic: TopicSpec(4, {})})
    batches = [[(f"k{(i * 7 + b) % 37}".encode(), f"{b}:{i}".encode()) for i in range(300)] for b in range(4)]
    asyncio.run(_publish(kafka_bootstrap, topic, 4, batches))
    _check_in_order(kafka_bootstrap, topic, batches, 4)


def test_memo_is_emptied_at_its_bound(monkeypatch):
    monkeypatch.setattr(publisher_module, "KEYS_REMEMBERED_MAX", 2)
    memos: dict = {}
    memo = publisher_module._memo(memos, "t")
    memo.update(a=1)
    assert publisher_module._memo(memos, "t") is memo  # below the bound: kept
    memo.update(b=2)
    fresh = publisher_module._memo(memos, "t")
    assert fresh == {} and memos["t"] is fresh
