"""Put canonical events on their source topics (usage, or grants for HR events).

Keyed by engineer_id so an engineer's events share a partition number across
both source topics (the worker's books are co-partitioned with them).
Every send is confirmed; a failed send raises instead of losing the event.

`make_producer` is the project's one Kafka producer configuration: every
publisher (this module, `ingest.publish`, dlq redrive, audit) takes its
producer from here.
"""

from __future__ import annotations

from typing import Iterable

from kafka import KafkaProducer

from compstream.codec import encode_event
from compstream.config import Topics
from compstream.domain.events import Event

# Bounds the unconfirmed sends (futures) a publisher holds before it waits for
# their acks; every publisher uses this one bound.
IN_FLIGHT_MAX = 5_000
SEND_TIMEOUT_S = 60


def topic_for(event: Event, topics: Topics) -> str:
    return topics.usage if event.type == "usage" else topics.grants


PRODUCER_CONFIG = {
    "acks": "all",
    # A retried send is written once and in order: the broker drops a batch it
    # already has (producer id + sequence number) instead of appending it again.
    "enable_idempotence": True,
    # A new topic's leaders, or a restarted broker's, can take seconds to be
    # elected: keep retrying (NotLeaderForPartition) for ~10 s, not 0.5 s.
    "retries": 20,
    "retry_backoff_ms": 500,
    "max_in_flight_requests_per_connection": 1,  # keep per-partition order on retry
    "request_timeout_ms": 30_000,
    "linger_ms": 5,
}


def make_producer(bootstrap: str) -> KafkaProducer:
    """A producer for the source topics and every other topic we publish to."""
    return KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_CONFIG)


def publish_events(events: Iterable[Event], bootstrap: str, topics: Topics,
                   producer: KafkaProducer | None = None) -> int:
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
