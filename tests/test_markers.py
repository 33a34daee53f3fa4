"""The fast tier's guard: tests/conftest.py marks every test that reaches the
broker through the `kafka_bootstrap` fixture as `kafka`, so
`-m "not kafka"` never starts one even when a module forgot its marker."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Loaded by path: under a whole-suite run the name `conftest` may be another
# directory's conftest.
_spec = importlib.util.spec_from_file_location("root_conftest", Path(__file__).with_name("conftest.py"))
assert _spec is not None and _spec.loader is not None
conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conftest)


class _Item:
    def __init__(self, fixturenames: tuple[str, ...], marked: bool = False) -> None:
        self.fixturenames = fixturenames
        self.markers = ["kafka"] if marked else []

    def get_closest_marker(self, name: str):
        return name if name in self.markers else None

    def add_marker(self, marker) -> None:
        self.markers.append(marker.name)


def test_tests_using_the_broker_fixture_get_the_kafka_marker() -> None:
    direct = _Item(("tmp_path", "kafka_bootstrap"))
    through_topics = _Item(("topics", "kafka_bootstrap", "topic_partitions"))  # fixture closure
    already = _Item(("kafka_bootstrap",), marked=True)
    offline = _Item(("tmp_path",))
    conftest.pytest_collection_modifyitems(None, [direct, through_topics, already, offline])
    assert direct.markers == ["kafka"] and through_topics.markers == ["kafka"]
    assert already.markers == ["kafka"]  # not added twice
    assert offline.markers == []

