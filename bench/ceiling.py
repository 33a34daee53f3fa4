"""Consume ceiling: how fast a bare client drains the source topics, doing
nothing but counting messages (no decode). Run as a subprocess:

    python -m bench.ceiling aiokafka|confluent|confluent-tuned BOOTSTRAP EXPECTED TOPIC [TOPIC...]

Prints one JSON line. Timing starts at the first non-empty fetch (so group
join/metadata is excluded) and ends when EXPECTED messages were seen.

`confluent` keeps librdkafka's fetch defaults; `confluent-tuned` sets
CONFLUENT_TUNING: with the default fetch.queue.backoff.ms (1 s) a consumer
that empties its prefetch queue waits up to a second before fetching again,
and queued.min.messages (100k) caps how far ahead it prefetches.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid


async def aiokafka_loop(bootstrap: str, expected: int, topics: list[str], timeout_s: float = 600) -> dict:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=f"bench-ceil-{uuid.uuid4().hex[:8]}",
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         max_partition_fetch_bytes=4 * 2**20, fetch_max_bytes=64 * 2**20)
    await c.start()
    n = 0
    nbytes = 0
    t_first = None
    deadline = time.monotonic() + timeout_s
    try:
        while n < expected and time.monotonic() < deadline:
            batches = await c.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                if records and t_first is None:
                    t_first = time.perf_counter()
                n += len(records)
                for r in records:
                    nbytes += len(r.value)
        dt = time.perf_counter() - (t_first or time.perf_counter())
    finally:
        await c.stop()
    return {"client": "aiokafka", "messages": n, "seconds": round(dt, 3),
            "msgs_per_s": round(n / dt) if dt else None, "avg_bytes": round(nbytes / max(n, 1), 1),
            "complete": n >= expected}


CONFLUENT_TUNING = {"fetch.queue.backoff.ms": 10, "queued.min.messages": 1_000_000}


def confluent_loop(bootstrap: str, expected: int, topics: list[str], timeout_s: float = 600,
                   tuned: bool = False) -> dict:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-ceil-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.max.bytes": 64 * 2**20, "max.partition.fetch.bytes": 4 * 2**20,
                  **(CONFLUENT_TUNING if tuned else {})})
    c.subscribe(topics)
    n = 0
    nbytes = 0
    t_first = None
    deadline = time.monotonic() + timeout_s
    try:
        while n < expected and time.monotonic() < deadline:
            msgs = c.consume(num_messages=10_000, timeout=0.5)
            if msgs and t_first is None:
                t_first = time.perf_counter()
            for m in msgs:
                if m.error() is None:
                    n += 1
                    nbytes += len(m.value())
        dt = time.perf_counter() - (t_first or time.perf_counter())
    finally:
        c.close()
    return {"client": "confluent-tuned" if tuned else "confluent", "settings": CONFLUENT_TUNING if tuned else {},
            "messages": n, "seconds": round(dt, 3),
            "msgs_per_s": round(n / dt) if dt else None, "avg_bytes": round(nbytes / max(n, 1), 1),
            "complete": n >= expected}


def main() -> None:
    client, bootstrap, expected, *topics = sys.argv[1:]
    if client == "aiokafka":
        out = asyncio.run(aiokafka_loop(bootstrap, int(expected), topics))
    elif client in ("confluent", "confluent-tuned"):
        out = confluent_loop(bootstrap, int(expected), topics, tuned=client == "confluent-tuned")
    else:
        raise SystemExit(f"unknown client {client!r}: aiokafka, confluent or confluent-tuned")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
