"""One producer configuration for every publisher: idempotent (a retried send
is neither duplicated nor reordered), acks from all replicas, one request in
flight per connection, and a bound on unconfirmed sends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kafka.errors import KafkaConnectionError

import compstream.publish as publish
from compstream.ingest import publish as ingest_publish

SRC = Path(__file__).resolve().parents[1] / "src" / "compstream"


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **config):
        self.calls.append(config)
        return object()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    rec = _Recorder()
    monkeypatch.setattr(publish, "KafkaProducer", rec)
    return rec


def test_every_publisher_gets_the_same_idempotent_producer(recorder: _Recorder) -> None:
    publish.make_producer("h:1")
    ingest_publish.make_producer("h:2")
    first, second = recorder.calls
    assert first.pop("bootstrap_servers") == "h:1" and second.pop("bootstrap_servers") == "h:2"
    assert first == second
    assert first["enable_idempotence"] is True
    assert first["acks"] == "all"
    assert first["retries"] > 0
    assert first["max_in_flight_requests_per_connection"] == 1


def test_ingest_reports_an_unreachable_broker_as_a_publish_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(**config):
        raise KafkaConnectionError("no broker answered")

    monkeypatch.setattr(publish, "KafkaProducer", unreachable)
    with pytest.raises(ingest_publish.PublishError, match="cannot connect to Kafka at h:9"):
        ingest_publish.make_producer("h:9")


def test_one_in_flight_bound() -> None:
    assert ingest_publish.IN_FLIGHT_MAX is publish.IN_FLIGHT_MAX
    assert 0 < publish.IN_FLIGHT_MAX <= 10_000


def test_no_other_module_builds_a_kafka_producer() -> None:
    # The worker's producer is Faust's (aiokafka), configured by the Faust app.
    builds = re.compile(r"(?<![A-Za-z])KafkaProducer\(")
    found = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if builds.search(p.read_text()))
    assert found == ["publish.py"]
