"""The web view is never ahead of the balance topic: a checkpoint held after
its outputs are produced and before its commit is not shown by
GET /balances/{engineer}; once committed it is. Both engines, real broker."""

from __future__ import annotations

import urllib.error
from datetime import timedelta

import pytest

from compstream.domain.events import GrantIssued, Usage
from compstream.publish import publish_events
from compstream.readback import latest_balances
from compstream.synth import START
from support.faults import worker_for
from support.http import http_json

pytestmark = pytest.mark.kafka
PARTITIONS = 4
ENGINEER = "eng-web-view"


def _usage(n: int) -> Usage:
    return Usage(f"u-web-{n}", ENGINEER, "openai", "gpt-4o", START + timedelta(hours=n), 1000, 100, 0, 0,
                 (n + 1) * 10**6)


def _applied_on_topic(bootstrap: str, topic: str) -> int | None:
    record = latest_balances(bootstrap, topic, timeout_s=2).get(ENGINEER)
    return None if record is None else record["events_applied"]


def _applied_on_web(port: int) -> int | None:
    try:
        status, body = http_json(port, f"/balances/{ENGINEER}")
    except urllib.error.URLError:  # not listening yet
        return None
    return body["events_applied"] if status == 200 else None


def test_a_checkpoint_in_flight_is_not_on_the_web_view(kafka_bootstrap, topics, tmp_path, engine):
    hold = tmp_path / "hold"
    worker = worker_for(tmp_path, kafka_bootstrap, topics, "w", PARTITIONS,
                        COMPSTREAM_FAULT_HOLD_BEFORE_COMMIT_FILE=str(hold)).start()
    try:
        grant = GrantIssued("g-web", ENGINEER, "grant-web", 10**12, START, None, "allowance")
        publish_events([grant, _usage(0)], kafka_bootstrap, topics)
        worker.wait_until(lambda: _applied_on_web(worker.web_port) == 2, 120, "the first two events on the web view")
        assert _applied_on_topic(kafka_bootstrap, topics.balances) == 2

        hold.touch()
        publish_events([_usage(1)], kafka_bootstrap, topics)
        worker.wait_until(lambda: "fault injection: holding commit" in worker.log_path.read_text(), 60,
                          "a checkpoint held before its commit")
        # Stepped, outputs produced, not committed: the view still shows the committed book.
        for _ in range(3):
            assert _applied_on_web(worker.web_port) == 2
        topic_applied = _applied_on_topic(kafka_bootstrap, topics.balances)
        if engine == "transactional":
            assert topic_applied == 2  # its transaction is open: read_committed readers do not see it
        else:
            assert topic_applied == 3  # Faust's outputs wave is out before state and positions

        hold.unlink()
        worker.wait_until(lambda: _applied_on_web(worker.web_port) == 3, 60, "the third event on the web view")
        assert _applied_on_topic(kafka_bootstrap, topics.balances) == 3
    finally:
        hold.unlink(missing_ok=True)
        assert worker.stop() == 0, worker.diagnosis()
