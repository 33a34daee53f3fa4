"""Real broker, real worker, the deployment's default bound: one usage event
with a wrong year (2099) among ordinary usage. It becomes a `future` dead
letter with its raw bytes; no engineer's grant expires and no later usage is
late (before the rule, every engineer of its partition was finalized to
2099); a redrive is refused again while the date is still ahead; and `diff`
agrees with the stream because it leaves the refused record out too."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from compstream.config import USAGE_AHEAD_S_MAX
from compstream.domain.events import GrantIssued, Usage
from compstream.history import open_history
from compstream.publish import publish_events
from compstream.readback import latest_balances
from compstream.synth import START
from compstream.worker.messages import partition_of
from ops.helpers import PARTITIONS, dead_letters, diff_json, env_for, run
from support.checks import wait_balances
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka
LATENESS_S = 6 * 3600


def _usage(event_id: str, engineer: str, at: datetime) -> Usage:
    return Usage(event_id, engineer, "openai", "gpt-4o", at, 1_000, 100, 0, 0, 5 * 10**6)


def test_usage_with_a_wrong_year_is_refused_and_finalizes_no_one(kafka_bootstrap, topics, tmp_path):
    # Two engineers on one partition: the typo is bob's, ada's grant is what it would have expired.
    bob = next(f"eng-{n}" for n in range(1000) if partition_of(f"eng-{n}", PARTITIONS)
               == partition_of("ada", PARTITIONS) and f"eng-{n}" != "ada")
    grants = [GrantIssued(f"g-{e}", e, "G", 10**12, START, START + timedelta(days=60), "monthly")
              for e in ("ada", bob)]
    before = [_usage(f"u-{e}-1", e, START + timedelta(hours=1)) for e in ("ada", bob)]
    typo = _usage("u-typo", bob, datetime(2099, START.month, START.day, 2, tzinfo=timezone.utc))
    after = [_usage(f"u-{e}-2", e, START + timedelta(hours=3)) for e in ("ada", bob)]
    group = f"g-{topics.prefix}"
    extra = {"COMPSTREAM_USAGE_AHEAD_S_MAX": str(USAGE_AHEAD_S_MAX)}  # the default (test workers allow more)
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=group, lateness_s=LATENESS_S,
                           partitions=PARTITIONS, extra_env=extra).start()
    env = env_for(kafka_bootstrap, topics, tmp_path / "w", group, COMPSTREAM_LATENESS_S=str(LATENESS_S), **extra)
    try:
        publish_events(grants + before, kafka_bootstrap, topics)
        wait_balances(kafka_bootstrap, topics.balances, {"ada": 2, bob: 2}, 90, worker)
        publish_events([typo] + after, kafka_bootstrap, topics)
        balances = wait_balances(kafka_bootstrap, topics.balances, {"ada": 3, bob: 3}, 90, worker)
        rows = dead_letters(env, 1)
        assert [r["stage"] for r in rows] == ["future"], rows
        assert "2099" in rows[0]["reason"] and "ahead of its Kafka record" in rows[0]["reason"], rows[0]
        for engineer in ("ada", bob):
            b = balances[engineer]
            # Nothing expired, nothing in overdraft: the watermark is START + 3 h - lateness, not 2099.
            assert (b["expired_nanos"], b["overdraft_nanos"], b["consumed_nanos"]) == (0, 0, 10 * 10**6), b
            assert b["watermark"] < START + timedelta(hours=3), b

        r = run(["dlq", "redrive", rows[0]["id"], "--yes"], env)
        assert r.exit_code == 0 and "1 redriven, 0 skipped" in r.output, r.output
        again = dead_letters(env, 2)
        assert [r["stage"] for r in again] == ["future", "future"], "refused again while 2099 is ahead"
        assert latest_balances(kafka_bootstrap, topics.balances, timeout_s=5)[bob]["events_applied"] == 3
        assert worker.alive(), worker.diagnosis()
    finally:
        assert worker.stop() == 0, worker.log_tail()

    result = diff_json(env)
    assert result["equal"] and result["refused_future"] == 2, result

    store = open_history(env["COMPSTREAM_CLICKHOUSE_DSN"])
    try:
        counted = {e.event_id for e in store.events_for(bob)}
        assert counted == {f"g-{bob}", f"u-{bob}-1", f"u-{bob}-2"}
        assert not any(e.late for e in store.events_for("ada") + store.events_for(bob))
        assert [d.stage for d in store.dead_letters()] == ["future", "future"]
    finally:
        store.close()
