"""Output records straight to the producer, with delivery checked before the ack.

Faust's `Topic.send` and table `__setitem__` cost ~100 µs of Python per record
(FutureMessage, ProducerBuffer, callbacks), and a batch writes ~5,000 books and
~5,000 balances. Here a call's records are grouped by partition into aiokafka
record batches (`create_batch`/`send_batch`: a few µs per record instead of
~25 µs for `send`); `send_batch` waits while the partition's previous batch is
unsent (backpressure, bounded memory) and returns the delivery future. Faust
only logs a failed delivery of a `Topic.send`; `delivered()` raises it, so the
agent crashes before its ack and the batch is replayed instead of a balance or
book being lost silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from compstream.worker.core.ports import OutRecord

# Engineer ids repeat every batch: their partitions and serialized table keys
# are remembered (Faust's JSON key serializer and aiokafka's pure-Python
# murmur2 were ~5 % of the worker's main thread). A memo that reaches this
# many keys is cleared and refilled: bounded, and refilling is cheap.
KEYS_REMEMBERED_MAX = 200_000


class Publisher:
    def __init__(self, producer_of: Callable[[], Any], partition_for: Callable[[str, bytes | None], int]):
        """`producer_of()`: the started AIOKafkaProducer; `partition_for(topic,
        key)`: the partition that producer's partitioner picks for `key`."""
        self._producer_of = producer_of
        self._partition_for = partition_for
        self.pending: list[Any] = []  # delivery futures since the last delivered()
        # (topic, partition count) -> key -> partition: a topic that gains
        # partitions gets a fresh memo, as the partitioner would see it.
        self._partitions: dict[tuple[str, int], dict[bytes | None, int]] = {}

    @classmethod
    def for_app(cls, app: Any) -> "Publisher":
        producer = app.producer  # Faust's wrapper; the aiokafka one exists once started
        return cls(producer._ensure_producer, lambda topic, key: producer.key_partition(topic, key).partition)

    async def send_records(self, records: Iterable[OutRecord]) -> None:
        """Checkpoint records (core.ports.OutRecord), in order per partition;
        a record without a partition goes to its key's."""
        by_topic: dict[str, list[OutRecord]] = {}
        for r in records:
            by_topic.setdefault(r.topic, []).append(r)
        for name, items in by_topic.items():
            partitions = await self._producer_of().partitions_for(name)
            memo = _memo(self._partitions, (name, len(partitions)))
            out = []
            for r in items:
                partition = r.partition
                if partition is None:
                    partition = memo.get(r.key)
                    if partition is None:
                        partition = memo[r.key] = self._partition_for(name, r.key)
                out.append((r.key, r.value, partition))
            await self._emit(name, out)

    async def _emit(self, topic: str, records: list[tuple[bytes | None, bytes | None, int]]) -> None:
        producer = self._producer_of()
        by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        for key, value, partition in records:
            by_partition.setdefault(partition, []).append((key, value))
        pending = self.pending
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is not None:
                    continue
                if batch.record_count():  # full: send it, start the next
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    # Larger than a whole batch: on its own, in order after the
                    # batch just sent (the broker may still refuse it: delivered()).
                    pending.append(await producer.send(topic, value, key=key, partition=partition))
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=partition))

    async def delivered(self) -> int:
        """Wait until the broker acknowledged every batch sent since the last
        call; raise the first delivery error. Returns how many futures."""
        pending, self.pending = self.pending, []
        for fut in pending:
            if not fut.done():
                await fut
            fut.result()  # raises the delivery error, if any
        return len(pending)


def _memo(memos: dict[Any, dict[bytes | None, int]], name: object) -> dict[bytes | None, int]:
    """memos[name], emptied first when it holds KEYS_REMEMBERED_MAX keys (a
    call adds at most one batch's keys past the bound)."""
    memo = memos.get(name)
    if memo is None or len(memo) >= KEYS_REMEMBERED_MAX:
        memo = memos[name] = {}
    return memo
