"""Real broker, real worker, exports from two providers a day apart: the day-old
Anthropic export arrives after the engineers' grants expired and became
final, so the worker applies it on top (overdraft) where a sorted replay
would let it draw on the grant. `compstream diff` must call that correct
worker equal (it follows the late decisions the history topic records) and
still catch a wrong balance of an engineer with late events."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from compstream.codec import encode_record
from compstream.domain.events import GrantIssued, Usage
from compstream.publish import make_producer, publish_events
from ops.helpers import PARTITIONS, doc, env_for, run
from support.checks import wait_balances
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka
LATENESS_S = 6 * 3600
DAY = datetime(2026, 10, 10, tzinfo=timezone.utc)
ENGINEERS = ("ada", "ken", "lin")


def test_diff_follows_the_late_decisions_and_still_catches_a_wrong_balance(kafka_bootstrap, topics, tmp_path):
    grants = [GrantIssued(f"g-{e}", e, f"G-{e}", 20 * 10**9, DAY - timedelta(days=5), DAY + timedelta(hours=2),
                          "allowance") for e in ENGINEERS]
    openai = [Usage(f"oa-{e}-{h}", e, "openai", "gpt-4o", DAY + timedelta(hours=h), 10, 10, 0, 0, 3 * 10**9)
              for e in ENGINEERS for h in range(0, 24, 4)]
    anthropic = [Usage(f"an-{e}-{h}", e, "anthropic", "claude", DAY - timedelta(days=1, hours=-h), 10, 10, 0, 0,
                       2 * 10**9) for e in ENGINEERS for h in range(0, 24, 6)]
    group = f"g-{topics.prefix}"
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=group, lateness_s=LATENESS_S,
                           partitions=PARTITIONS).start()
    env = env_for(kafka_bootstrap, topics, tmp_path / "w", group, COMPSTREAM_LATENESS_S=str(LATENESS_S))
    try:
        publish_events(grants + openai, kafka_bootstrap, topics)  # today's OpenAI export
        wait_balances(kafka_bootstrap, topics.balances, {e: 7 for e in ENGINEERS}, 90, worker)
        publish_events(anthropic, kafka_bootstrap, topics)  # yesterday's Anthropic export, a day late
        live = wait_balances(kafka_bootstrap, topics.balances, {e: 11 for e in ENGINEERS}, 90, worker)
        for e in ENGINEERS:
            # The grant expired (final) at 02:00 with 17 of 20 left; the day-old
            # 8 came after: overdraft. Sorted, they would have drawn on it (9 expired).
            assert (live[e]["expired_nanos"], live[e]["overdraft_nanos"]) == (17 * 10**9, 23 * 10**9), live[e]
        r = run(["diff", "--settle", "20", "--json"], env)
        assert r.exit_code == 0, r.output
        result = doc(r)
        assert result["equal"] and (result["late_engineers"], result["late_events"]) == (3, 12), result
    finally:
        assert worker.stop() == 0, worker.log_tail()

    # The offline replays agree with the stream too: of the source topics (the
    # decisions from the history topic) and of the history (from the store).
    for source in ("--from-kafka", "--from-history"):
        path = tmp_path / f"{source[2:]}.json"
        r = run(["replay", source, "--strict", "-o", str(path)], env)
        assert r.exit_code == 0, r.output
        assert "3 engineers with late events replayed as the stream applied them" in r.output, r.output
        replayed = json.loads(path.read_text())["engineers"]
        for e in ENGINEERS:
            assert {k: live[e][k] for k in replayed[e]} == replayed[e], (source, e)

    wrong = {**live["ken"], "expired_nanos": 9 * 10**9, "overdraft_nanos": 15 * 10**9}  # the sorted replay's
    producer = make_producer(kafka_bootstrap)
    producer.send(topics.balances, key=b"ken", value=encode_record("BalanceUpdate", wrong)).get(timeout=30)
    producer.close()
    r = run(["diff", "--json"], env)
    assert r.exit_code == 1, r.output
    found = {(d["engineer_id"], d["field"]): (d["live"], d["replay"]) for d in doc(r)["differences"]}
    assert found == {("ken", "expired_nanos"): (9 * 10**9, 17 * 10**9),
                     ("ken", "overdraft_nanos"): (15 * 10**9, 23 * 10**9)}, found
