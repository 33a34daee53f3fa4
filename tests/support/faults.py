"""Helpers for the fault-injection scenarios (tests/faults)."""

from __future__ import annotations

import dataclasses
import os
import random
from datetime import datetime, timedelta, timezone

from compstream.codec import encode_event, encode_record
from compstream.domain.events import LEDGER_EVENT_TYPES
from compstream.publish import publish_events
from compstream.synth import START
from support.checks import (
    LONG_LATENESS_S,
    assert_history_exact,
    expected_counts,
    history_figures,
    sentinels,
    wait_balances,
    wait_quiet,
)
from support.worker import WorkerProcess

SESSION_TIMEOUT_S = 6  # the broker's minimum: a killed worker's partitions move fast
SOAK = os.environ.get("COMPSTREAM_SOAK") == "1"


def ledger_only(events) -> list:
    return [e for e in events if e.type in LEDGER_EVENT_TYPES]


def worker_for(tmp_path, bootstrap, topics, name: str, partitions: int, data_dir=None, **env) -> WorkerProcess:
    """A worker of the scenario's group; the same `name` means the same data dir
    (state + embedded history), as a restarted process on one host would have."""
    return WorkerProcess(
        data_dir or tmp_path / name, bootstrap, topics, group=f"g-{topics.prefix}",
        lateness_s=LONG_LATENESS_S, partitions=partitions,
        extra_env={"COMPSTREAM_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S), **env},
    )


def poison_records(events) -> list[tuple[str, bytes | None, bytes, str]]:
    """(which topic, key, raw bytes, expected dead-letter stage) for each kind
    of bad input; publish them after `events` (the conflict needs its original
    applied first)."""
    grant = next(e for e in events if e.type == "grant_issued")
    usage = next(e for e in events if e.type == "usage")
    negative = {f.name: getattr(grant, f.name) for f in dataclasses.fields(grant) if f.name != "type"}
    negative.update(event_id="poison-negative", amount_nanos=-5)
    conflicting = dataclasses.replace(usage, cost_nanos=(usage.cost_nanos or 0) + 1)  # same id, new payload
    rng = random.Random(4)
    return [
        ("usage", b"eng-00001", bytes(rng.randrange(256) for _ in range(64)), "decode:framing"),
        ("usage", b"eng-00002", b"\xc3\x01" + bytes(8) + b"\x02\x04", "decode:schema"),
        ("grants", b"eng-00003", encode_record("DeadLetter", {  # valid Avro, not an event schema
            "source_topic": "x", "source_partition": 0, "source_offset": 0, "key": None,
            "raw": b"", "stage": "s", "reason": "r", "received_at": grant.effective_at}), "decode:schema"),
        ("grants", grant.engineer_id.encode(), encode_record("GrantIssued", negative), "validate"),
        ("usage", usage.engineer_id.encode(), encode_event(conflicting), "conflict"),
        ("usage", b"someone-else", encode_event(usage), "route"),
        # a typed-in year: usage dated decades ahead of its record's timestamp
        ("usage", usage.engineer_id.encode(), encode_event(dataclasses.replace(
            usage, event_id="poison-future", occurred_at=datetime(2099, 1, 1, tzinfo=timezone.utc))), "future"),
    ]


def publish_poison(bootstrap: str, topics, poison) -> None:
    from compstream.publish import make_producer

    producer = make_producer(bootstrap)
    for which, key, raw, _ in poison:
        producer.send(getattr(topics, which), key=key, value=raw).get(timeout=30)
    producer.close()


def finalize_and_stop(worker: WorkerProcess, bootstrap: str, topics, events, partitions: int) -> dict:
    """Sentinels far ahead make every partition final; then stop the worker
    (its loader loads what was committed) and check the history is exact:
    every table holds each key once and every event is there."""
    ticks = sentinels(START + timedelta(days=120), partitions)
    publish_events(ticks, bootstrap, topics)
    wait_balances(bootstrap, topics.balances, expected_counts(ticks), 120, worker)
    wait_quiet(bootstrap, topics.balances, quiet_s=3, timeout_s=60)
    assert worker.stop() == 0, worker.log_tail()
    figures = history_figures(worker.env["COMPSTREAM_CLICKHOUSE_DSN"], events + ticks,
                              ticks[0].occurred_at - timedelta(seconds=LONG_LATENESS_S))
    assert_history_exact(figures)
    return figures
