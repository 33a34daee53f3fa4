"""`compstream diff` against a real worker's balances, and `replay
--from-history` against `replay --from-kafka` on the history that worker wrote."""

from __future__ import annotations

import json
import random

import pytest

from compstream.codec import encode_record
from compstream.domain.events import LEDGER_EVENT_TYPES
from compstream.publish import make_producer, publish_events
from compstream.synth import generate
from ops.helpers import LATENESS_S, PARTITIONS, doc, env_for, expected_counts, run, wait_balances
from support.kafka import free_port
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka


def test_diff_on_live_balances_and_history_replay(kafka_bootstrap, topics, tmp_path):
    events = list(generate(engineers=10, usage_events=200, seed=21, with_hr=True))
    random.Random(4).shuffle(events)
    duplicates = [e for e in events if e.type in LEDGER_EVENT_TYPES][:5]
    group = f"g-{topics.prefix}"
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=group,
                           lateness_s=LATENESS_S, partitions=PARTITIONS).start()
    env = env_for(kafka_bootstrap, topics, tmp_path / "w", group, COMPSTREAM_WEB_PORT=str(free_port()))
    try:
        publish_events(events + duplicates, kafka_bootstrap, topics)
        live = wait_balances(kafka_bootstrap, topics, expected_counts(events), worker)
        r = run(["diff", "--settle", "20", "--json"], env)
        assert r.exit_code == 0, r.output
        result = doc(r)
        assert result["equal"] and result["engineers_live"] == result["engineers_replay"] == 10
        # The embedded history belongs to the running worker: refused, not a crash.
        r = run(["replay", "--from-history"], env)
        assert r.exit_code == 2 and "holds the embedded history" in r.output
    finally:
        assert worker.stop() == 0, worker.log_tail()

    # A wrong balance record (and one for an engineer without events) is caught.
    engineer = sorted(live)[0]
    wrong = {**live[engineer], "consumed_nanos": live[engineer]["consumed_nanos"] + 1}
    ghost = {**live[engineer], "engineer_id": "ghost"}
    producer = make_producer(kafka_bootstrap)
    for record in (wrong, ghost):
        producer.send(topics.balances, key=record["engineer_id"].encode(),
                      value=encode_record("BalanceUpdate", record)).get(timeout=30)
    producer.close()
    r = run(["diff", "--json"], env)
    assert r.exit_code == 1
    diffs = {(d["engineer_id"], d["field"]): d for d in doc(r)["differences"]}
    assert set(diffs) == {(engineer, "consumed_nanos"), ("ghost", "(presence)")}
    assert diffs[(engineer, "consumed_nanos")]["live"] == wrong["consumed_nanos"]
    assert diffs[(engineer, "consumed_nanos")]["replay"] == wrong["consumed_nanos"] - 1
    r = run(["diff"], env)  # the human table
    assert r.exit_code == 1 and "consumed_nanos" in r.stdout and "2 differences" in r.output

    # The history (worker stopped) replays to what the topics replay to.
    for extra in ([], ["--as-of", "2026-10-12T00:00:00Z"]):
        outputs = []
        for source in ("--from-history", "--from-kafka"):
            path = tmp_path / f"{source[2:]}.json"
            r = run(["replay", source, "--strict", "-o", str(path), *extra], env)
            assert r.exit_code == 0, r.output
            outputs.append(json.loads(path.read_text()))
        assert outputs[0] == outputs[1] and len(outputs[0]["engineers"]) == 10
