"""After a restart the worker knows the partitions' stream time before any
new usage arrives (it is stored with the books), so a grant dated ahead stays
out of the balances published from HR-only batches. Real broker and worker."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from compstream.domain.events import GrantIssued, Usage
from compstream.publish import publish_events
from compstream.readback import latest_balances
from support.http import http_json
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka
T = datetime(2026, 11, 1, tzinfo=timezone.utc)
ENG = "eng-00001"
LATENESS_S = 6 * 3600


def _balance(kafka_bootstrap, topics, worker, events_applied: int) -> dict:
    return worker.wait_until(
        lambda: (lambda b: b if b.get(ENG, {}).get("events_applied") == events_applied else None)(
            latest_balances(kafka_bootstrap, topics.balances, timeout_s=2)),
        timeout_s=90, what=f"{events_applied} events applied")[ENG]


def test_restarted_worker_keeps_a_scheduled_grant_out(kafka_bootstrap, topics, tmp_path):
    now_grant = GrantIssued("g-now", ENG, "G-now", 10**9, T, None, "monthly")
    next_month = GrantIssued("g-next", ENG, "G-next", 10**9, T + timedelta(days=30), None, "monthly")
    usage = Usage("u-1", ENG, "anthropic", "claude-sonnet-4-5", T + timedelta(hours=1), 1000, 100, 0, 0, 10**6)

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess(tmp_path / name, kafka_bootstrap, topics, group=f"g-{topics.prefix}",
                             lateness_s=LATENESS_S, partitions=4).start()

    first = worker("a")
    try:
        publish_events([now_grant, next_month, usage], kafka_bootstrap, topics)
        balance = _balance(kafka_bootstrap, topics, first, 3)
        assert balance["issued_nanos"] == 10**9  # next month's grant is not counted yet
    finally:
        assert first.stop() == 0, first.log_tail()

    # A fresh process (empty data dir): books and stream time come from the changelog.
    second = worker("b")
    try:
        bonus = GrantIssued("g-bonus", ENG, "G-bonus", 5 * 10**8, T + timedelta(minutes=30), None, "bonus")
        publish_events([bonus], kafka_bootstrap, topics)  # an HR-only batch: no usage to tell the time
        balance = _balance(kafka_bootstrap, topics, second, 4)
        assert balance["issued_nanos"] == 15 * 10**8, balance
        assert balance["as_of"] == T + timedelta(hours=1)  # the stored stream time: the usage
    finally:
        assert second.stop() == 0, second.log_tail()

    # Another fresh process, with nothing new to read: its web view already
    # answers as of the stored stream time (next month's grant left out).
    third = worker("c")
    try:
        def served():
            try:
                status, body = http_json(third.web_port, f"/balances/{ENG}")
            except OSError:  # the web server is not up yet
                return None
            return body if status == 200 else None

        body = third.wait_until(served, timeout_s=90, what="the balance web view")
        assert body["issued_nanos"] == 15 * 10**8, body
    finally:
        assert third.stop() == 0, third.log_tail()
