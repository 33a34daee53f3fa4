"""A restore's first look at a changelog another worker just created waits
for its leader instead of exiting (the fatal exit 75 two workers started
together hit)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from compstream.worker.engines import kafka_sides


class Reader:
    def __init__(self, failures: list[int]):
        self.failures = list(failures)
        self.calls = 0

    def get_watermark_offsets(self, tp, timeout):
        self.calls += 1
        if self.failures:
            raise KafkaException(KafkaError(self.failures.pop(0)))
        return 0, 7


def test_no_leader_yet_is_waited_out(monkeypatch):
    monkeypatch.setattr(kafka_sides.time, "sleep", lambda _s: None)
    reader = Reader([KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE])
    assert kafka_sides._watermarks(reader, TopicPartition("c", 0)) == (0, 7)
    assert reader.calls == 3


def test_other_errors_and_a_leader_that_never_comes_still_raise(monkeypatch):
    monkeypatch.setattr(kafka_sides.time, "sleep", lambda _s: None)
    with pytest.raises(KafkaException):
        kafka_sides._watermarks(Reader([KafkaError.TOPIC_AUTHORIZATION_FAILED]), TopicPartition("c", 0))
    stuck = Reader([KafkaError.NOT_LEADER_FOR_PARTITION] * (kafka_sides.LEADER_ATTEMPTS + 1))
    with pytest.raises(KafkaException):
        kafka_sides._watermarks(stuck, TopicPartition("c", 0))
    assert stuck.calls == kafka_sides.LEADER_ATTEMPTS
