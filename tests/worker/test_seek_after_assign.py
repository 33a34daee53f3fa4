"""A seek right after an assignment, on the real broker: the transactional
engine seeks to the changelog's positions as soon as a partition is restored,
while librdkafka may still be looking up where the partition starts (no
committed offset). It once failed there with _STATE (CI, a leaderboard crash
test) and the worker exited; the seek now waits for the partition to fetch.
This test did not reproduce that race here (it passes with and without the
wait); it holds the path itself: a seek at once lands where it says."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer

from compstream.worker.core.ports import Assigned
from compstream.worker.engines.kafka_sides import KafkaInput
from compstream.worker.messages import SourceMessage

pytestmark = pytest.mark.kafka
RECORDS_PER_PARTITION = 5
SEEK_TO = 3


def test_a_seek_at_once_after_the_assignment_starts_there(kafka_bootstrap, topics, topic_partitions):
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for p in range(topic_partitions):
        for n in range(RECORDS_PER_PARTITION):
            producer.produce(topics.grants, key=b"k", value=f"{p}:{n}".encode(), partition=p)
    assert producer.flush(30) == 0
    source = KafkaInput(kafka_bootstrap, f"seek-{uuid.uuid4().hex[:8]}", (topics.grants,), session_timeout_s=10)
    try:
        assigned: tuple = ()
        deadline = time.monotonic() + 60
        while not assigned and time.monotonic() < deadline:
            assigned = next((i.partitions for i in source.poll(100, 0.2) if isinstance(i, Assigned)), ())
        assert len(assigned) == topic_partitions, assigned
        # At once, as the loop does after a restore: no poll in between.
        source.seek({tp: SEEK_TO for tp in assigned})
        first: dict = {}
        deadline = time.monotonic() + 60
        while len(first) < topic_partitions and time.monotonic() < deadline:
            for item in source.poll(100, 0.2):
                if isinstance(item, SourceMessage):
                    first.setdefault((item.topic, item.partition), item.offset)
        assert first == {tp: SEEK_TO for tp in assigned}
    finally:
        source.close()
