"""`compstream replay --from-kafka` equals `replay --input` of the same events:
the whole topics, an offset range and a publish-time range. Expected values
come from an independent read-back of the topics (plain consumer + codec)."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from kafka import KafkaConsumer, TopicPartition

from compstream.codec import DecodeError, decode_event
from compstream.domain.events import format_time
from compstream.publish import make_producer, publish_events
from compstream.synth import START, generate
from ops.helpers import env_for, run, write_jsonl

pytestmark = pytest.mark.kafka
AS_OF = format_time(START + timedelta(days=15))
GARBAGE = b"\x00\xffnot avro"


def _read_back(bootstrap, topics):
    """Every source record: (topic, partition, offset, timestamp ms, event or None)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             consumer_timeout_ms=2000)
    tps = [TopicPartition(t, p) for t in (topics.usage, topics.grants)
           for p in sorted(consumer.partitions_for_topic(t))]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out = []
    for m in consumer:
        try:
            event = decode_event(m.value)
        except DecodeError:
            event = None
        out.append((m.topic, m.partition, m.offset, m.timestamp, event))
    consumer.close()
    return out


def _boundary() -> datetime:
    """A publish-time boundary between what was sent and what comes next:
    now, once the clock has left the millisecond in which the last record was
    stamped (record timestamps, and --since/--until, are whole milliseconds)."""
    sent_ms = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 <= sent_ms:
        time.sleep(0.0002)
    return datetime.now(timezone.utc)


def _replay(env, args, out_path):
    r = run(["replay", *args, "--as-of", AS_OF, "-o", str(out_path)], env)
    return r, (json.loads(out_path.read_text()) if out_path.exists() else None)


def test_replay_from_kafka_equals_replay_of_a_file(kafka_bootstrap, topics, tmp_path):
    events = list(generate(engineers=8, usage_events=150, seed=3, with_hr=True))
    random.Random(1).shuffle(events)
    usage = next(e for e in events if e.type == "usage" and e.cost_nanos)
    conflict = replace(usage, cost_nanos=usage.cost_nanos + 1)  # same id, other payload
    a, b, c = events[:60] + [events[3]], events[60:120] + [conflict], events[120:]
    publish_events(a, kafka_bootstrap, topics)
    t1 = _boundary()
    publish_events(b, kafka_bootstrap, topics)
    t2 = _boundary()
    publish_events(c, kafka_bootstrap, topics)
    producer = make_producer(kafka_bootstrap)
    meta = producer.send(topics.usage, key=b"eng-00001", value=GARBAGE).get(timeout=30)
    producer.close()
    env = env_for(kafka_bootstrap, topics, tmp_path, "unused")
    back = _read_back(kafka_bootstrap, topics)
    assert len(back) == len(a) + len(b) + len(c) + 1

    # Everything, with the garbage reported by its coordinates.
    errors = tmp_path / "errors.jsonl"
    r, got = _replay(env, ["--from-kafka", "--errors", str(errors)], tmp_path / "k.json")
    assert r.exit_code == 0, r.output
    _, want = _replay(env, ["-i", write_jsonl(tmp_path / "all.jsonl", a + b + c)], tmp_path / "f.json")
    assert got == want and len(got["engineers"]) == 8
    where = f"{topics.usage}[{meta.partition}]@{meta.offset}"
    assert f"bad message: {where}: decode:framing" in r.output
    problems = [json.loads(x) for x in errors.read_text().splitlines()]
    assert {"kind": "bad message", "topic": topics.usage, "partition": meta.partition,
            "offset": meta.offset, "stage": "decode:framing"}.items() <= problems[0].items()
    assert [p["event_id"] for p in problems if p["kind"] == "conflict"] == [usage.event_id]
    assert "1 duplicates ignored, 1 conflicts rejected, 1 bad messages" in r.output

    r, _ = _replay(env, ["--from-kafka", "--strict"], tmp_path / "strict.json")
    assert r.exit_code == 1 and not (tmp_path / "strict.json").exists()

    # An offset range: 2 <= offset < 12 everywhere, grants partition 0 from 1.
    r, got = _replay(env, ["--from-kafka", "--from-offset", "2", "--from-offset", f"{topics.grants}:0=1",
                           "--to-offset", "12"], tmp_path / "o.json")
    assert r.exit_code == 0, r.output
    lo = {(topics.grants, 0): 1}
    picked = [e for t, p, o, _, e in back if lo.get((t, p), 2) <= o < 12 and e is not None]
    _, want = _replay(env, ["-i", write_jsonl(tmp_path / "o.jsonl", picked)], tmp_path / "of.json")
    assert got == want and 0 < len(picked) < len(back) - 1

    # A publish-time range: exactly batch b.
    r, got = _replay(env, ["--from-kafka", "--since", format_time(t1), "--until", format_time(t2)],
                     tmp_path / "t.json")
    assert r.exit_code == 0, r.output
    ms1, ms2 = int(t1.timestamp() * 1000), int(t2.timestamp() * 1000)
    picked = [e for _, _, _, ts, e in back if ms1 <= ts < ms2]
    assert sorted(e.event_id for e in picked) == sorted(e.event_id for e in b)
    _, want = _replay(env, ["-i", write_jsonl(tmp_path / "t.jsonl", b)], tmp_path / "tf.json")
    assert got == want


def test_replay_source_arguments_are_checked(kafka_bootstrap, topics, tmp_path):
    env = env_for(kafka_bootstrap, topics, tmp_path, "unused")
    assert run(["replay"], env).exit_code == 2
    assert run(["replay", "--from-kafka", "--from-history"], env).exit_code == 2
    assert run(["replay", "--from-history", "--since", "2026-01-01T00:00:00Z"], env).exit_code == 2
    assert run(["replay", "--from-kafka", "--from-offset", "x=1"], env).exit_code == 2
    r = run(["replay", "--from-kafka"], env_for(kafka_bootstrap, topics, tmp_path, "u",
                                                 COMPSTREAM_TOPIC_PREFIX="no.such.prefix"))
    assert r.exit_code == 2 and "does not exist" in r.output
