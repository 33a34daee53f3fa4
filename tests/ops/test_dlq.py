"""`compstream dlq list|show|redrive` round trip with a real worker: garbage
and a conflicting duplicate are dead-lettered, listed and shown; a fixed
version of the garbage is redriven and applied once, however often redriven."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from compstream.broker.topics import delete_topics
from compstream.config import Settings
from compstream.domain.events import LEDGER_EVENT_TYPES, Usage, event_to_dict
from compstream.history import open_history
from compstream.ops.dlq import marker_topic
from compstream.ops.rebuild import catch_up, end_offsets
from compstream.publish import make_producer, publish_events
from compstream.synth import START, generate
from ops.helpers import LATENESS_S, PARTITIONS, env_for, expected_counts, run, wait_balances
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka
GARBAGE = b"\x00\xffnot avro at all"


def _listed(env) -> list[dict]:
    r = run(["dlq", "list", "--json"], env)
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def _caught_up(env, worker) -> None:
    """The worker has committed everything on the source topics (a duplicate
    publishes no balance, so offsets are the only sign it was processed)."""
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, env):
        settings = Settings.from_env()
    target = end_offsets(settings)
    worker.wait_until(lambda: catch_up(settings, target).complete, 60, "worker caught up")


def test_dlq_list_show_redrive(kafka_bootstrap, topics, tmp_path):
    events = [e for e in generate(engineers=4, usage_events=40, seed=9) if e.type in LEDGER_EVENT_TYPES]
    usage = next(e for e in events if e.type == "usage" and e.engineer_id == "eng-00001" and e.cost_nanos)
    conflict = replace(usage, cost_nanos=usage.cost_nanos + 7)
    fixed = Usage("u-fixed", "eng-00001", "openai", "gpt-4o", START + timedelta(days=2), 10, 10, 0, 0, 123_000)
    group = f"g-{topics.prefix}"
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=group,
                           lateness_s=LATENESS_S, partitions=PARTITIONS).start()
    env = env_for(kafka_bootstrap, topics, tmp_path / "w", group)
    expected = expected_counts(events)
    try:
        publish_events(events, kafka_bootstrap, topics)
        producer = make_producer(kafka_bootstrap)
        garbage_at = producer.send(topics.usage, key=b"eng-00001", value=GARBAGE).get(timeout=30)
        producer.close()
        publish_events([conflict], kafka_bootstrap, topics)
        wait_balances(kafka_bootstrap, topics, expected, worker)
        deadline = time.monotonic() + 30
        while len(rows := _listed(env)) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert sorted(r["stage"] for r in rows) == ["conflict", "decode:framing"], rows
        bad = next(r for r in rows if r["stage"] == "decode:framing")
        clash = next(r for r in rows if r["stage"] == "conflict")
        assert bad["source"] == f"{topics.usage}:{garbage_at.partition}:{garbage_at.offset}"
        assert bad["size"] == len(GARBAGE) and bad["redriven"] is None
        assert usage.event_id in clash["reason"]

        r = run(["dlq", "show", bad["id"], "--json"], env)
        assert r.exit_code == 0, r.output
        shown = json.loads(r.stdout)
        assert shown["hex"].startswith("00000000  00 ff 6e 6f 74")
        assert "not avro" in shown["utf8"] and shown["decoded"]["error"].startswith("decode:framing")
        r = run(["dlq", "show", clash["id"], "--json"], env)
        assert json.loads(r.stdout)["decoded"]["event"]["cost_nanos"] == conflict.cost_nanos
        assert run(["dlq", "show", "99:99"], env).exit_code == 2

        # The conflict cannot succeed unchanged: skipped, nothing published.
        r = run(["dlq", "redrive", clash["id"], "--yes"], env)
        assert r.exit_code == 0 and "conflict is decided by data" in r.output and "0 to redrive" in r.output

        fix_file = tmp_path / "fixed.jsonl"
        fix_file.write_text(json.dumps({"offset": bad["id"], "event": event_to_dict(fixed)}) + "\n")
        r = run(["dlq", "redrive", "--fixed", str(fix_file), "--yes"], env)
        assert r.exit_code == 0, r.output
        assert f"{bad['id']} -> {topics.usage}:{garbage_at.partition}:" in r.stdout
        expected["eng-00001"] += 1
        wait_balances(kafka_bootstrap, topics, expected, worker)

        # Marked: a second redrive is refused; forced, it is a harmless duplicate.
        r = run(["dlq", "redrive", "--fixed", str(fix_file), "--yes"], env)
        assert r.exit_code == 0 and "already redriven" in r.output and "0 to redrive" in r.output
        r = run(["dlq", "redrive", "--fixed", str(fix_file), "--yes", "--force"], env)
        assert r.exit_code == 0 and "1 redriven" in r.output
        _caught_up(env, worker)
        assert [r["redriven"] is not None for r in _listed(env) if r["id"] == bad["id"]] == [True]
    finally:
        assert worker.stop() == 0, worker.log_tail()
        delete_topics(kafka_bootstrap, [marker_topic(topics)])

    r = run(["diff", "--json"], env)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["bad_messages"] == 1  # the garbage stays in the event store, reported
    store = open_history(env["COMPSTREAM_CLICKHOUSE_DSN"])
    try:
        counts = store.event_id_counts()
        assert counts.rows == counts.distinct == len({e.event_id for e in events}) + 1
        assert [e.event_id for e in store.events_for("eng-00001")].count("u-fixed") == 1
    finally:
        store.close()
