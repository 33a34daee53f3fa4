"""The worker end to end: real broker, real worker process, embedded ClickHouse.

Expected values come from the pure batch replay of the same events (sorted
fold), not from the streaming book the worker runs.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from compstream.domain.chain import verify_chain
from compstream.domain.events import LEDGER_EVENT_TYPES
from compstream.domain.replay import replay, replay_detailed
from compstream.history import open_history
from compstream.publish import make_producer, publish_events
from compstream.readback import latest_balances, read_records
from compstream.synth import START, generate
from support.checks import expected_counts as _expected_counts
from support.checks import sentinels, wait_quiet
from support.http import http_json
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka
PARTITIONS = 4
LATENESS_S = 40 * 86400  # covers the whole synthetic month: no event is late


def test_balances_and_history_match_an_independent_replay(kafka_bootstrap, topics, tmp_path):
    events = [e for e in generate(engineers=12, usage_events=300, seed=11, with_hr=True)
              if e.type in LEDGER_EVENT_TYPES]
    random.Random(3).shuffle(events)
    ticks = sentinels(START + timedelta(days=120), PARTITIONS)
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=f"g-{topics.prefix}",
                           lateness_s=LATENESS_S, partitions=PARTITIONS).start()
    try:
        publish_events(events, kafka_bootstrap, topics)
        expected = _expected_counts(events)
        balances = worker.wait_until(
            lambda: (lambda b: b if all(b.get(e, {}).get("events_applied") == n
                                        for e, n in expected.items()) else None)(
                latest_balances(kafka_bootstrap, topics.balances, timeout_s=2)),
            timeout_s=120, what="balances for every engineer")
        for engineer, record in balances.items():
            want = replay(events, as_of=record["as_of"])[engineer].to_dict()
            got = {k: record[k] for k in want if k in record}
            assert got == {k: want[k] for k in got}, engineer
            # The web view answers from the same book, as of the same stream time.
            status, body = http_json(worker.web_port, f"/balances/{engineer}")
            assert status == 200 and {k: body[k] for k in got} == got, engineer
            # ... and says how final it is: final-through only moves forward, and
            # the view is at least as recent as the engineer's last record.
            assert body["events_applied"] == record["events_applied"], engineer
            assert body["as_of"] == record["as_of"].isoformat(), engineer
            assert datetime.fromisoformat(body["final_through"]) >= record["watermark"], engineer
        assert http_json(worker.web_port, "/balances/nobody")[0] == 404
        # Now push the watermark past everything so every posting is final.
        publish_events(ticks, kafka_bootstrap, topics)
        worker.wait_until(
            lambda: all(t.engineer_id in latest_balances(kafka_bootstrap, topics.balances, timeout_s=2)
                        for t in ticks),
            timeout_s=60, what="sentinel balances")
        # The sweep that finalizes quiet books publishes their balances in the
        # same batch; wait for the balance topic to go quiet.
        wait_quiet(kafka_bootstrap, topics.balances, quiet_s=3, timeout_s=60)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    store = open_history(worker.env["COMPSTREAM_CLICKHOUSE_DSN"])
    try:
        unique = {e.event_id for e in events} | {t.event_id for t in ticks}
        counts = store.event_counts(collapsed=False)
        assert counts.rows == len(unique)
        assert counts.distinct == len(unique)
        # Watermark after the ticks: tick time - lateness; replay just before it.
        watermark = ticks[0].occurred_at - timedelta(seconds=LATENESS_S)
        want = replay_detailed(events, as_of=watermark - timedelta(microseconds=1))
        for engineer, postings in want.postings.items():
            stored = store.postings_for(engineer)
            assert [p.hash for p in stored] == [p.hash for p in postings], engineer
            verify_chain(stored)
    finally:
        store.close()


def test_garbage_in_the_middle_becomes_a_dead_letter_and_processing_continues(
        kafka_bootstrap, topics, tmp_path):
    events = list(generate(engineers=5, usage_events=60, seed=5))
    first, second = events[:30], events[30:]
    garbage = b"\x00\xffnot an avro message at all"
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=f"g-{topics.prefix}",
                           lateness_s=LATENESS_S, partitions=PARTITIONS).start()
    try:
        publish_events(first, kafka_bootstrap, topics)
        producer = make_producer(kafka_bootstrap)
        producer.send(topics.usage, key=b"eng-00001", value=garbage).get(timeout=30)
        producer.close()
        publish_events(second, kafka_bootstrap, topics)
        expected = _expected_counts(events)
        worker.wait_until(
            lambda: all(latest_balances(kafka_bootstrap, topics.balances, timeout_s=2)
                        .get(e, {}).get("events_applied") == n for e, n in expected.items()),
            timeout_s=120, what="balances after the garbage message")
        dead = read_records(kafka_bootstrap, topics.dead_letters, until=lambda r: len(r) >= 1, timeout_s=30)
        assert len(dead) == 1
        _, name, record = dead[0]
        assert name == "DeadLetter"
        assert record["raw"] == garbage
        assert record["source_topic"] == topics.usage
        assert record["stage"] == "decode:framing"
    finally:
        assert worker.stop() == 0, worker.log_tail()
    store = open_history(worker.env["COMPSTREAM_CLICKHOUSE_DSN"])
    try:
        rows = store.dead_letters()
        assert [r.raw for r in rows] == [garbage]
        assert store.event_counts(collapsed=False).rows == len({e.event_id for e in events})
    finally:
        store.close()


def test_backlog_of_both_topics_with_default_lateness_matches_replay(kafka_bootstrap, topics, tmp_path):
    """The demo's situation: the whole sample (grants and usage) is on the
    topics before the worker starts, lateness is the default 6 h. Grants on
    their own topic must not arrive 'late' behind later usage."""
    from pathlib import Path

    from compstream.demo import load_events
    from support.checks import balance_mismatches, wait_balances

    events = load_events(Path(__file__).resolve().parents[2] / "examples" / "sample-events.jsonl")
    publish_events(events, kafka_bootstrap, topics)
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=f"g-{topics.prefix}",
                           lateness_s=6 * 3600, partitions=PARTITIONS).start()
    try:
        balances = wait_balances(kafka_bootstrap, topics.balances, _expected_counts(events), 120, worker)
        assert balance_mismatches(balances, events) == []
        # Alerts are not stuck behind the backlog: every alert the replay
        # raises before an engineer's final-through is on the alerts topic,
        # and no other (the demo once showed 0 of 7 until more usage came).
        from compstream.domain.replay import replay_detailed
        from compstream.readback import read_records

        want = set()
        for engineer, record in balances.items():
            mine = [e for e in events if e.engineer_id == engineer]
            for a in replay_detailed(mine).alerts.get(engineer, []):
                if record["watermark"] is not None and a.event_time < record["watermark"]:
                    want.add((engineer, a.kind, a.threshold_pct, a.cause_event_id))
        assert want, "the sample must raise alerts, or this checks nothing"

        def published(records):
            return {(r["engineer_id"], r["kind"], r["threshold_pct"], r["cause_event_id"])
                    for _, _, r in records if not r["kind"].startswith("report:")}

        got = published(read_records(kafka_bootstrap, topics.alerts, lambda rs: want <= published(rs), 30))
        assert got == want
    finally:
        assert worker.stop() == 0, worker.log_tail()
