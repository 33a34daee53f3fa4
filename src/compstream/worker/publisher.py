"""Output records straight to the producer, with delivery checked before the ack.

Faust's `Topic.send` and table `__setitem__` cost ~100 µs of Python per record
(FutureMessage, ProducerBuffer, callbacks), and a batch writes ~5,000 books
and ~5,000 balances: that path was a third of the worker's time. Here each
record is one `Producer.send`, which enqueues into aiokafka's accumulator (it
waits while the partition's batch is full: backpressure, bounded memory) and
returns the delivery future. Faust only logs a failed delivery of a
`Topic.send`; `delivered()` raises it, so the agent crashes before its ack and
the batch is replayed instead of a balance or book being lost silently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

# (topic, key, value, partition or None) -> awaitable of the delivery future
Send = Callable[[str, bytes, bytes, "int | None"], Awaitable]


class Publisher:
    def __init__(self, send: Send):
        self._send = send
        self.pending: list = []  # delivery futures since the last delivered()

    @classmethod
    def for_app(cls, app) -> "Publisher":
        async def send(topic: str, key: bytes, value: bytes, partition: int | None):
            return await app.producer.send(topic, key, value, partition, None, None)

        return cls(send)

    async def send(self, topic, records: Iterable[tuple[bytes, bytes]]) -> None:
        """`topic`: a Faust topic; partition by key (the producer's murmur2)."""
        await topic.maybe_declare()  # cached by Faust: a no-op after the first
        name, send, pending = topic.get_topic_name(), self._send, self.pending
        for key, value in records:
            pending.append(await send(name, key, value, None))

    async def write_table(self, table, items: Iterable[tuple[str, bytes, int]]) -> None:
        """`table[key] = value` as Faust does it (changelog record, then the
        store), with the changelog partition given. Records of one partition
        keep their order (one producer; aiokafka sends one batch per
        partition at a time), so a position written after its books is never
        restored ahead of them."""
        topic = table.changelog_topic
        await topic.maybe_declare()
        name = topic.get_topic_name()
        key_serializer, value_serializer = table.key_serializer, table.value_serializer
        send, data, pending = self._send, table.data, self.pending
        for key, value, partition in items:
            key_bytes, _ = topic.prepare_key(key, key_serializer)
            value_bytes, _ = topic.prepare_value(value, value_serializer)
            pending.append(await send(name, key_bytes, value_bytes, partition))
            data[key] = value

    async def delivered(self) -> int:
        """Wait until the broker acknowledged every record sent since the last
        call; raise the first delivery error. Returns how many records."""
        pending, self.pending = self.pending, []
        for fut in pending:
            if not fut.done():
                await fut
            fut.result()  # raises the delivery error, if any
        return len(pending)
