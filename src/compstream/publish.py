"""Put canonical events on their source topics (usage, or grants for HR events).

Keyed by engineer_id so an engineer's events share a partition number across
both source topics (the worker's books are co-partitioned with them).
Every send is confirmed; a failed send raises instead of losing the event.
"""

from __future__ import annotations

from typing import Iterable

from kafka import KafkaProducer

from compstream.codec import encode_event
from compstream.config import Topics
from compstream.domain.events import Event

# Bounds the unconfirmed sends held in memory before we wait for acks.
IN_FLIGHT_MAX = 5_000
SEND_TIMEOUT_S = 60


def topic_for(event: Event, topics: Topics) -> str:
    return topics.usage if event.type == "usage" else topics.grants


def make_producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        retries=5,
        max_in_flight_requests_per_connection=1,  # keep per-partition order on retry
        request_timeout_ms=30_000,
    )


def publish_events(events: Iterable[Event], bootstrap: str, topics: Topics, producer=None) -> int:
    own = producer is None
    producer = producer or make_producer(bootstrap)
    pending = []
    sent = 0
    try:
        for event in events:
            pending.append(producer.send(
                topic_for(event, topics), key=event.engineer_id.encode(), value=encode_event(event)
            ))
            if len(pending) >= IN_FLIGHT_MAX:
                sent += _confirm(pending)
        producer.flush(timeout=SEND_TIMEOUT_S)
        sent += _confirm(pending)
    finally:
        if own:
            producer.close(timeout=SEND_TIMEOUT_S)
    return sent


def _confirm(pending: list) -> int:
    count = len(pending)
    for future in pending:
        future.get(timeout=SEND_TIMEOUT_S)  # raises KafkaError on failure
    pending.clear()
    return count
