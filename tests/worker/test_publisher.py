"""BatchPublisher against the real broker: every record lands once, in the
partition Kafka's default partitioner picks for its key, in order per key."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from kafka.admin import KafkaAdminClient, NewTopic

from compstream.worker.publisher import BatchPublisher, PublishError, partition_for


def test_partition_for_matches_the_default_partitioner():
    keys = [f"eng-{i:05d}".encode() for i in range(2_000)] + [b"", b"\xff\x00", "é".encode()]
    for n in (1, 3, 4, 12):
        for key in keys:
            assert partition_for(key, n) == DefaultPartitioner()(key, list(range(n)), list(range(n)))


def _create(bootstrap: str, name: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


async def _publish_and_read(bootstrap: str, outputs: dict, expected_total: int, max_batch_size: int):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=max_batch_size)
    await producer.start()
    try:
        published = await BatchPublisher(lambda: producer).publish(outputs)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(*outputs, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    got = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < expected_total and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got += records
    finally:
        await consumer.stop()
    return published, got


def test_publish_lands_every_record_once_in_its_key_partition(kafka_bootstrap):
    a, b = f"pub-a-{uuid.uuid4().hex[:8]}", f"pub-b-{uuid.uuid4().hex[:8]}"
    _create(kafka_bootstrap, a, 4)
    _create(kafka_bootstrap, b, 3)
    # Many records per key (order must hold) and a small batch size, so one
    # partition needs several record batches.
    items_a = [(f"eng-{i % 300:05d}".encode(), f"a-{i}".encode() * 20) for i in range(6_000)]
    items_b = [(f"eng-{i % 50:05d}".encode(), f"b-{i}".encode()) for i in range(500)]
    published, got = asyncio.run(_publish_and_read(
        kafka_bootstrap, {a: items_a, b: items_b}, len(items_a) + len(items_b), max_batch_size=16_384))
    assert published == len(items_a) + len(items_b)
    assert len(got) == published
    sent = {a: items_a, b: items_b}
    for topic, n in ((a, 4), (b, 3)):
        records = [r for r in got if r.topic == topic]
        assert sorted((r.key, r.value) for r in records) == sorted(sent[topic])
        assert all(r.partition == partition_for(r.key, n) for r in records)
        per_key = defaultdict(list)
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            per_key[r.key].append(r.value)
        expected = defaultdict(list)
        for key, value in sent[topic]:
            expected[key].append(value)
        assert per_key == expected


def test_publish_refuses_keyless_records(kafka_bootstrap):
    topic = f"pub-c-{uuid.uuid4().hex[:8]}"
    _create(kafka_bootstrap, topic, 1)

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await BatchPublisher(lambda: producer).publish({topic: [(None, b"x")]})
        finally:
            await producer.stop()

    with pytest.raises(PublishError, match="without a bytes key"):
        asyncio.run(run())
