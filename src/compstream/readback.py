"""Read the worker's outputs back from Kafka (balances, dead letters, alerts).

Used by the demo, `compstream diff` and the tests: a consumer with no group
(nothing committed), from the earliest offset, bounded by a deadline. It
reads committed records only (`read_committed`), as a downstream service
must: the transactional engine's open or aborted transactions are not
balances.
"""

from __future__ import annotations

import time
from typing import Callable

from kafka import KafkaConsumer

from compstream.codec import decode_record

POLL_IDLE_MS = 1000


def read_records(bootstrap: str, topic: str, until: Callable[[list], bool] | None = None,
                 timeout_s: float = 30.0) -> list[tuple[bytes | None, str, dict]]:
    """All (key, record name, record) on `topic`, polling until `until(records)`
    holds or `timeout_s` passes (then whatever arrived is returned)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=POLL_IDLE_MS,
                             isolation_level="read_committed")
    records: list[tuple[bytes | None, str, dict]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            for message in consumer:
                name, record = decode_record(message.value)
                records.append((message.key, name, record))
            if until is None or until(records) or time.monotonic() >= deadline:
                return records
    finally:
        consumer.close()


def latest_balances(bootstrap: str, topic: str, expected_events: dict[str, int] | None = None,
                    timeout_s: float = 30.0) -> dict[str, dict]:
    """Latest BalanceUpdate per engineer. With `expected_events`, waits until each
    engineer's balance reports that many applied events."""

    def latest(records: list[tuple[bytes | None, str, dict]]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for _, _, record in records:
            out[record["engineer_id"]] = record
        return out

    def done(records: list[tuple[bytes | None, str, dict]]) -> bool:
        if expected_events is None:
            return True
        got = latest(records)
        return all(got.get(e, {}).get("events_applied") == n for e, n in expected_events.items())

    return latest(read_records(bootstrap, topic, done, timeout_s))
