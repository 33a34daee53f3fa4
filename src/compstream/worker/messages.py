"""What every engine hands the checkpoint core: source messages, and where an
engineer's events live (the source partition)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kafka.partitioner.default import murmur2

from compstream.domain.twin import fast_constructor

# A message's Kafka coordinates: (topic, partition, offset).
Coord = tuple[str, int, int]


def partition_of(engineer_id: str, partitions: int) -> int:
    """The source partition of an engineer: Kafka's default (murmur2) partitioner,
    which every producer of the source topics uses (kafka-python, aiokafka, and
    confluent-kafka configured with `partitioner=murmur2_random`)."""
    hashed: int = murmur2(engineer_id.encode("utf-8"))  # kafka-python is untyped
    return (hashed & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class SourceMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: datetime  # the Kafka record's time: deterministic on retry


# SourceMessage(topic, partition, offset, key, value, timestamp) without the
# frozen __init__ (~0.8 -> ~0.25 µs): an engine builds one per fetched message.
new_source_message = fast_constructor(SourceMessage)


@dataclass(frozen=True, slots=True)
class EndOfInput:
    """The engine read a source topic-partition up to its end (librdkafka's
    partition EOF): nothing more is there right now."""

    topic: str
    partition: int
    offset: int  # the next offset that will be written
