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


class Publisher:
    def __init__(self, producer_of: Callable[[], object], partition_for: Callable[[str, bytes], int]):
        """`producer_of()`: the started AIOKafkaProducer; `partition_for(topic,
        key)`: the partition that producer's partitioner picks for `key`."""
        self._producer_of = producer_of
        self._partition_for = partition_for
        self.pending: list = []  # delivery futures since the last delivered()

    @classmethod
    def for_app(cls, app) -> "Publisher":
        producer = app.producer  # Faust's wrapper; the aiokafka one exists once started
        return cls(producer._ensure_producer, lambda topic, key: producer.key_partition(topic, key).partition)

    async def send(self, topic, records: Iterable[tuple[bytes, bytes]]) -> None:
        """`topic`: a Faust topic; records go to the partition of their key."""
        await topic.maybe_declare()  # cached by Faust: a no-op after the first
        name, partition_for = topic.get_topic_name(), self._partition_for
        # The partitioner needs the topic's metadata, which a producer started
        # before the topic existed does not have yet (send() would wait for it).
        await self._producer_of().partitions_for(name)
        await self._emit(name, [(key, value, partition_for(name, key)) for key, value in records])

    async def write_table(self, table, items: Iterable[tuple[str, bytes, int]]) -> None:
        """`table[key] = value` as Faust does it (changelog record, store),
        with the changelog partition given. Records of one partition keep
        their order (batches of a partition are sent one after another), so a
        position written after its books is never restored ahead of them."""
        topic = table.changelog_topic
        await topic.maybe_declare()
        key_serializer, value_serializer = table.key_serializer, table.value_serializer
        data, out = table.data, []
        for key, value, partition in items:
            key_bytes, _ = topic.prepare_key(key, key_serializer)
            value_bytes, _ = topic.prepare_value(value, value_serializer)
            out.append((key_bytes, value_bytes, partition))
            data[key] = value
        await self._emit(topic.get_topic_name(), out)

    async def _emit(self, topic: str, records: list[tuple[bytes, bytes, int]]) -> None:
        producer = self._producer_of()
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
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
