"""Real broker, real worker: usage dated more than the dedupe horizon behind
the watermark is refused as a dead letter (stage too_old) — the exact re-send
of a forgotten event and a new event that old alike — and counted once or not
at all; `dlq redrive` will not send it back unchanged, and `diff` leaves it
out of its replay as the worker did."""

from __future__ import annotations

from datetime import timedelta

import pytest

from compstream.domain.book import SEEN_USAGE_DAYS
from compstream.domain.events import GrantIssued, Usage
from compstream.history import open_history
from compstream.publish import publish_events
from compstream.synth import START
from ops.helpers import PARTITIONS, dead_letters, diff_json, env_for, run
from support.checks import wait_balances
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka
ENG = "eng-horizon"
LATENESS_S = 6 * 3600


def _usage(event_id: str, at, cost: int) -> Usage:
    return Usage(event_id, ENG, "anthropic", "claude", at, 100, 50, 0, 0, cost)


def test_usage_older_than_the_horizon_is_dead_lettered_once(kafka_bootstrap, topics, tmp_path):
    grant = GrantIssued("g-1", ENG, "G1", 10**12, START, None, "monthly")
    old = _usage("u-old", START + timedelta(hours=1), 1_000)
    now = _usage("u-now", START + timedelta(days=SEEN_USAGE_DAYS + 10), 20_000)
    # A second batch with nothing lagging moves the watermark (the first one's
    # is held back while the grants topic is still being read).
    now2 = _usage("u-now-2", now.occurred_at + timedelta(minutes=30), 500)
    stale = _usage("u-stale-new-id", START + timedelta(hours=2), 300)  # never seen, as old
    after = _usage("u-after", now.occurred_at + timedelta(hours=1), 4_000)
    group = f"g-{topics.prefix}"
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=group,
                           lateness_s=LATENESS_S, partitions=PARTITIONS).start()
    env = env_for(kafka_bootstrap, topics, tmp_path / "w", group, COMPSTREAM_LATENESS_S=str(LATENESS_S))
    try:
        publish_events([grant, old, now], kafka_bootstrap, topics)
        wait_balances(kafka_bootstrap, topics.balances, {ENG: 3}, 90, worker)
        publish_events([now2], kafka_bootstrap, topics)
        wait_balances(kafka_bootstrap, topics.balances, {ENG: 4}, 90, worker)
        # `after` is behind the two on the same partition of the usage topic:
        # once it counts, they were processed.
        publish_events([old, stale, after], kafka_bootstrap, topics)
        balance = wait_balances(kafka_bootstrap, topics.balances, {ENG: 5}, 90, worker)[ENG]
        assert balance["usage_cost_nanos"] == sum(u.cost_nanos for u in (old, now, now2, after))

        rows = dead_letters(env, 2, timeout_s=30)
        assert sorted(r["stage"] for r in rows) == ["too_old", "too_old"], rows
        assert {"u-old", "u-stale-new-id"} == {
            next(x for x in ("u-old", "u-stale-new-id") if x in r["reason"]) for r in rows}

        r = run(["dlq", "redrive", rows[0]["id"], "--yes"], env)
        assert r.exit_code == 0 and "refused again" in r.output and "0 to redrive" in r.output
    finally:
        assert worker.stop() == 0, worker.log_tail()

    # The audit replay leaves out exactly what the worker refused, so it agrees.
    result = diff_json(env)
    assert result["equal"] and result["refused_too_old"] == 2, result

    store = open_history(env["COMPSTREAM_CLICKHOUSE_DSN"])
    try:
        ids = [e.event_id for e in store.events_for(ENG)]
        assert sorted(ids) == ["g-1", "u-after", "u-now", "u-now-2", "u-old"], ids
        assert sorted(d.stage for d in store.dead_letters()) == ["too_old", "too_old"]
    finally:
        store.close()
