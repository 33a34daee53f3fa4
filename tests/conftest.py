"""Session-wide real Kafka broker for the test suite.

Set COMPSTREAM_KAFKA_BOOTSTRAP to reuse a running broker; otherwise the
project's own broker is started in a temp dir on free ports (never the
developer's 19092) and stopped when the session ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from compstream.config import Topics
from support.kafka import free_port
from support.kafka import unique_topics as _unique_names

TEST_PARTITIONS = 4


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that reaches the broker (the `kafka_bootstrap` fixture, also
    through `topics`) carries the `kafka` marker, so `-m "not kafka"` (the fast
    tier, `make test-fast`) never starts one even if a module forgot to mark it."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()) and item.get_closest_marker("kafka") is None:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("COMPSTREAM_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    from compstream.broker import runtime

    data_dir = tmp_path_factory.mktemp("kafka")
    info = runtime.start(data_dir, port=free_port(), controller_port=free_port(),
                         partitions=TEST_PARTITIONS, timeout_s=120)
    try:
        yield info.bootstrap
    finally:
        runtime.stop(data_dir)


@pytest.fixture
def topic_partitions() -> int:
    """Partitions of the keyed test topics; override in a test module if needed."""
    return TEST_PARTITIONS


@pytest.fixture
def topics(kafka_bootstrap: str, topic_partitions: int, request: pytest.FixtureRequest) -> Iterator[Topics]:
    """Per-test topic names, created on the broker with the production configs."""
    from compstream.broker.topics import delete_topics, ensure_topics

    names = _unique_names(request.node.name)
    ensure_topics(kafka_bootstrap, names, topic_partitions)
    yield names
    delete_topics(kafka_bootstrap, names)


@pytest.fixture
def unique_topics(topics: Topics) -> Topics:
    """Alias of `topics`."""
    return topics


@pytest.fixture(autouse=True)
def _no_leftover_workers():
    """Kill any worker process a test started and did not stop (a failed test)."""
    yield
    from support.worker import kill_leftovers

    kill_leftovers()
