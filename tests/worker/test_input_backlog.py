"""`KafkaInput.ends` and `backlog(partitions, below)` on the real broker: the
loop takes the sources' ends when a batch's drained floor passes and waits
only for records before them (core/loop.py `fill`). A partition not read
from yet that is not known empty counts as a backlog whatever the bound."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer

from compstream.worker.core.ports import Assigned
from compstream.worker.engines.kafka_sides import KafkaInput
from compstream.worker.messages import SourceMessage

pytestmark = pytest.mark.kafka
RECORDS = 10


def test_a_backlog_is_counted_below_the_ends_taken_earlier(kafka_bootstrap, topics, topic_partitions):
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for n in range(RECORDS):
        producer.produce(topics.grants, key=b"k", value=f"{n}".encode(), partition=0)
    assert producer.flush(30) == 0
    source = KafkaInput(kafka_bootstrap, f"backlog-{uuid.uuid4().hex[:8]}", (topics.grants,), session_timeout_s=10)
    tp = (topics.grants, 0)
    try:
        assigned: tuple = ()
        deadline = time.monotonic() + 60
        while not assigned and time.monotonic() < deadline:
            assigned = next((i.partitions for i in source.poll(1, 0.2) if isinstance(i, Assigned)), ())
        assert tp in assigned, assigned
        assert source.backlog([tp], {tp: 0}) == {tp}  # nothing returned yet: not known empty
        first = None
        deadline = time.monotonic() + 60
        while first is None and time.monotonic() < deadline:
            first = next((i for i in source.poll(1, 0.2) if isinstance(i, SourceMessage)), None)
        assert first is not None and (first.topic, first.partition, first.offset) == (*tp, 0)
        assert source.ends([tp]) == {tp: RECORDS}  # fetched: the cached high watermark
        assert source.backlog([tp]) == {tp}
        assert source.backlog([tp], {tp: 2}) == {tp}  # offset 1 not returned yet
        assert source.backlog([tp], {tp: 1}) == set()
        assert source.lag([tp], {tp: 1}) == {tp: RECORDS - 1}
        if topic_partitions > 1:  # an empty partition, once fetched, holds none
            empty = (topics.grants, 1)
            deadline = time.monotonic() + 30
            while source.backlog([empty]) and time.monotonic() < deadline:
                source.poll(1, 0.1)
            assert source.backlog([empty]) == set()
            assert source.ends([empty]) == {empty: 0}
    finally:
        source.close()
