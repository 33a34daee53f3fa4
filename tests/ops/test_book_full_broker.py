"""Real broker, real worker: an engineer whose usage outgrows the book's byte
limit (one changelog record) does not stop the worker. What does not fit is
dead-lettered (stage book_full, raw bytes), the rest is applied exactly once,
other engineers are served as usual; a redrive while the book is still full
is refused again, not lost; and `diff` agrees with the stream because it
leaves the refused records out as the worker did."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from compstream.codec import decode_event
from compstream.domain.events import GrantIssued, Usage
from compstream.history import open_history
from compstream.publish import publish_events
from compstream.readback import latest_balances
from compstream.synth import START
from ops.helpers import PARTITIONS, dead_letters, diff_json, env_for, run
from support.checks import wait_balances
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka
HEAVY, LIGHT = "eng-heavy", "eng-light"
LATENESS_S = 6 * 3600  # everything below stays pending: the book only grows
BOOK_BYTES_MAX = 8192
HEAVY_USAGE = 300


def _usage(engineer: str, i: int) -> Usage:
    return Usage(f"{engineer}-u{i:04d}", engineer, "anthropic", "claude-sonnet",
                 START + timedelta(hours=1, seconds=i), 1_000, 200, 0, 0, 1_000 + i)


def test_a_book_at_its_limit_refuses_usage_and_the_worker_goes_on(kafka_bootstrap, topics, tmp_path):
    grants = [GrantIssued(f"g-{e}", e, "G", 10**12, START, None, "monthly") for e in (HEAVY, LIGHT)]
    heavy = [_usage(HEAVY, i) for i in range(HEAVY_USAGE)]
    light = [_usage(LIGHT, i) for i in range(3)]
    group = f"g-{topics.prefix}"
    extra = {"COMPSTREAM_BOOK_BYTES_MAX": str(BOOK_BYTES_MAX)}
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=group, lateness_s=LATENESS_S,
                           partitions=PARTITIONS, extra_env=extra).start()
    env = env_for(kafka_bootstrap, topics, tmp_path / "w", group, COMPSTREAM_LATENESS_S=str(LATENESS_S), **extra)
    try:
        publish_events(grants + heavy + light, kafka_bootstrap, topics)
        wait_balances(kafka_bootstrap, topics.balances, {LIGHT: 4}, 90, worker)
        # Every heavy event is either applied (counted in the balance) or a dead letter.
        deadline, applied, rows = time.monotonic() + 90, 0, []
        while time.monotonic() < deadline:
            applied = latest_balances(kafka_bootstrap, topics.balances, timeout_s=1).get(
                HEAVY, {}).get("events_applied", 0)
            rows = dead_letters(env, 1, timeout_s=5)
            if applied + len(rows) == 1 + HEAVY_USAGE:
                break
            assert worker.alive(), worker.diagnosis()
        assert rows and applied > 1 and applied + len(rows) == 1 + HEAVY_USAGE, (applied, len(rows))
        assert {r["stage"] for r in rows} == {"book_full"}, rows[:3]
        assert all(HEAVY in r["reason"] and f"{BOOK_BYTES_MAX}-byte limit" in r["reason"] for r in rows)

        r = run(["dlq", "redrive", rows[0]["id"], "--yes"], env)
        assert r.exit_code == 0 and "1 redriven, 0 skipped" in r.output, r.output
        again = dead_letters(env, len(rows) + 1)
        assert len(again) == len(rows) + 1, "the redriven copy is refused again while the book is full"
        assert worker.alive(), worker.diagnosis()
    finally:
        assert worker.stop() == 0, worker.log_tail()

    result = diff_json(env)
    assert result["equal"] and result["refused_book_full"] == len(rows) + 1, result

    store = open_history(env["COMPSTREAM_CLICKHOUSE_DSN"])
    try:
        counted = [e.event_id for e in store.events_for(HEAVY)]
        refused = {decode_event(d.raw).event_id for d in store.dead_letters() if d.stage == "book_full"}
        assert len(counted) == len(set(counted)) == applied, "each applied event once in the history"
        assert set(counted) | refused == {e.event_id for e in grants[:1] + heavy}
        assert not set(counted) & refused
    finally:
        store.close()
