"""Deliver usage events: to the Kafka usage topic, or to a canonical JSONL file.

The only module of `compstream.ingest` that writes to Kafka (topic_journal.py
reads the topic back to rebuild the journal). Every send is
confirmed: futures are checked in bounded batches (IN_FLIGHT_MAX) and after a
final flush; any failure raises PublishError, so the caller does not commit
the ingest journal and a re-run re-sends the same deterministic ids. The
producer and the in-flight bound are the project's one configuration
(`compstream.publish`).
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator, TypeVar

from compstream.domain.events import Event, Usage, event_to_json
from compstream.publish import IN_FLIGHT_MAX, SEND_TIMEOUT_S
from compstream.publish import make_producer as _make_producer

if TYPE_CHECKING:
    from kafka import KafkaProducer


class PublishError(RuntimeError):
    pass


def make_producer(bootstrap: str) -> KafkaProducer:
    """compstream.publish.make_producer, with a failure to connect as PublishError."""
    from kafka.errors import KafkaError

    try:
        return _make_producer(bootstrap)
    except KafkaError as exc:
        raise PublishError(f"cannot connect to Kafka at {bootstrap}: {exc}") from exc


Headers = Callable[[Usage], list[tuple[str, bytes]]]
# Usage from `compstream ingest`, HR events from `compstream hr import` / `grants issue`.
E = TypeVar("E", bound=Event)


def publish(events: Iterable[E], bootstrap: str, topic: str, producer: KafkaProducer | None = None,
            headers: Callable[[E], list[tuple[str, bytes]]] | None = None) -> Iterator[E]:
    """Send each event (key = engineer_id) and yield it once its send is confirmed.

    Yielding confirmed events lets the caller drive a progress bar. Raises
    PublishError on the first failed send; nothing after it is confirmed.
    `headers(event)`: Kafka record headers for it (not part of the event).
    """
    from kafka.errors import KafkaError

    from compstream.codec import encode_event

    own = producer is None
    if producer is None:
        producer = make_producer(bootstrap)
    pending: list[tuple[E, Any]] = []
    try:
        for event in events:
            try:
                future = producer.send(topic, key=event.engineer_id.encode("utf-8"), value=encode_event(event),
                                       headers=headers(event) if headers is not None else None)
            except KafkaError as exc:
                raise PublishError(f"send of {event.event_id} failed: {exc}") from exc
            pending.append((event, future))
            if len(pending) >= IN_FLIGHT_MAX:
                yield from _confirm(producer, pending)
        yield from _confirm(producer, pending)
    finally:
        if own:
            producer.close(timeout=SEND_TIMEOUT_S)


def _confirm(producer: KafkaProducer, pending: list[tuple[E, Any]]) -> Iterator[E]:
    from kafka.errors import KafkaError

    try:
        producer.flush(timeout=SEND_TIMEOUT_S)
    except KafkaError as exc:
        raise PublishError(f"flush failed: {exc}") from exc
    batch = list(pending)
    pending.clear()
    for event, future in batch:
        try:
            future.get(timeout=SEND_TIMEOUT_S)
        except Exception as exc:  # KafkaError, timeouts: every failure is fatal here
            raise PublishError(f"send of {event.event_id} was not acknowledged: {exc!r}") from exc
        yield event


def write_jsonl(events: Iterable[Usage], handle: IO[str]) -> Iterator[Usage]:
    for event in events:
        handle.write(event_to_json(event) + "\n")
        yield event
    handle.flush()
