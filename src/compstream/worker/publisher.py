"""Publish a batch's keyed outputs as whole record batches, one per partition.

A 5,000-event batch publishes thousands of balances. Faust's `Topic.send`
costs tens of µs per record in Python (a FutureMessage, a channel hop and a
producer future each); here records go into aiokafka's C record builder and
the producer gets one batch per topic-partition.

Keys go to the partition Kafka's default partitioner picks (murmur2), so a
key's records stay in one partition whoever produces them — compaction and
per-key order need that. `publish` returns after the broker acknowledged every
record (the producer's acks setting), so the caller acks its source batch only
after its outputs are durable, and a failed send raises instead of being
committed past.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Sequence

from kafka.partitioner.default import murmur2

RECORDS_PER_CALL_MAX = 100_000  # a batch's outputs; a bug beyond this, not load


class PublishError(RuntimeError):
    pass


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a keyed record (Java's and aiokafka's)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class BatchPublisher:
    def __init__(self, producer: Callable[[], object],
                 declare: Callable[[str], Awaitable[None]] | None = None):
        # A callable: the aiokafka producer exists only once the app started.
        self._producer = producer
        self._declare = declare  # creates a missing topic, as Faust's own sends do
        self._partitions: dict[str, int] = {}

    async def _partition_count(self, producer, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            if self._declare is not None:
                await self._declare(topic)
            ids = await producer.partitions_for(topic)
            if not ids or sorted(ids) != list(range(len(ids))):
                raise PublishError(f"topic {topic!r}: unexpected partitions {sorted(ids or ())}")
            n = self._partitions[topic] = len(ids)
        return n

    async def publish(self, outputs: dict[str, Sequence[tuple[bytes, bytes]]]) -> int:
        """outputs: topic -> [(key, value)] in order. Returns records published."""
        total = sum(len(items) for items in outputs.values())
        if total > RECORDS_PER_CALL_MAX:
            raise PublishError(f"{total} records in one call exceeds {RECORDS_PER_CALL_MAX}")
        producer = self._producer()
        pending = []
        for topic, items in outputs.items():
            if not items:
                continue
            n = await self._partition_count(producer, topic)
            by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
            for key, value in items:
                if not isinstance(key, bytes):
                    raise PublishError(f"topic {topic!r}: record without a bytes key ({key!r})")
                by_partition.setdefault(partition_for(key, n), []).append((key, value))
            for partition, records in sorted(by_partition.items()):
                pending += await _send_partition(producer, topic, partition, records)
        if pending:
            await asyncio.gather(*pending)  # raises the first delivery error
        return total


async def _send_partition(producer, topic: str, partition: int, records) -> list:
    futures = []
    batch = producer.create_batch()
    count = 0
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:
            if count == 0:
                raise PublishError(f"{topic}[{partition}]: a {len(value)}-byte record does not fit an empty batch")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch, count = producer.create_batch(), 0
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise PublishError(f"{topic}[{partition}]: a {len(value)}-byte record does not fit an empty batch")
        count += 1
    if count:
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures
