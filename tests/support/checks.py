"""Shared end-to-end checks: balances vs an offline replay, history exactly once.

The expected side is always the pure sorted batch replay of the events that
were published — never the worker's own streaming code path.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from compstream.codec import decode_record
from compstream.domain.chain import verify_chain
from compstream.domain.events import LEDGER_EVENT_TYPES, Usage
from compstream.domain.replay import replay, replay_detailed
from compstream.history import open_history
from compstream.readback import latest_balances, read_records

LONG_LATENESS_S = 40 * 86400  # covers a synthetic month: no event is late


def partition_of(engineer: str, partitions: int) -> int:
    return (murmur2(engineer.encode()) & 0x7FFFFFFF) % partitions


def sentinels(after: datetime, partitions: int) -> list[Usage]:
    """One zero-cost usage event per partition, far ahead of every real event,
    so every partition's watermark passes all events and expiries."""
    out, seen = [], set()
    for n in range(10_000):
        engineer = f"clock-{n}"
        p = partition_of(engineer, partitions)
        if p not in seen:
            seen.add(p)
            out.append(Usage(f"tick-{engineer}-{after:%Y%m%d}", engineer, "none", "none", after, 0, 0, 0, 0, 0))
        if len(seen) == partitions:
            return out
    raise RuntimeError("could not cover every partition")


def expected_counts(events) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in {e.event_id: e for e in events}.values():
        if e.type in LEDGER_EVENT_TYPES:
            counts[e.engineer_id] = counts.get(e.engineer_id, 0) + 1
    return counts


def complete(balances: dict, expected: dict[str, int]) -> bool:
    return all(balances.get(e, {}).get("events_applied") == n for e, n in expected.items())


def wait_balances(bootstrap: str, topic: str, expected: dict[str, int], timeout_s: float,
                  worker=None) -> dict:
    """Until every engineer's latest balance counts its expected events. With
    `worker` (a support.worker.WorkerProcess), fail early when it dies, and put
    its log into the failure message."""
    deadline = time.monotonic() + timeout_s
    balances: dict = {}
    while time.monotonic() < deadline:
        balances = latest_balances(bootstrap, topic, timeout_s=1)
        if complete(balances, expected):
            return balances
        if worker is not None and not worker.alive():
            raise AssertionError(f"worker died while waiting for balances\n{worker.diagnosis()}")
        time.sleep(0.5)
    missing = {e: (balances.get(e, {}).get("events_applied"), n) for e, n in expected.items()
               if balances.get(e, {}).get("events_applied") != n}
    context = f"\n{worker.diagnosis()}" if worker is not None else ""
    raise AssertionError(f"balances incomplete after {timeout_s}s: {dict(list(missing.items())[:10])}{context}")


class BalanceTail:
    """Balance records published after it was made (a consumer positioned at
    the topic's end), to wait for the first sign that a worker took new events
    in without re-reading the whole topic."""

    def __init__(self, bootstrap: str, topic: str):
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                      isolation_level="read_committed")
        partitions = self.consumer.partitions_for_topic(topic)
        if not partitions:
            self.consumer.close()
            raise AssertionError(f"topic {topic} has no partitions")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_end(*tps)
        for tp in tps:
            self.consumer.position(tp)  # resolve "end" now, not at the first poll

    def wait_beyond(self, counts: dict[str, int], timeout_s: float, worker=None) -> dict:
        """The first balance that counts more events than `counts` gives its
        engineer (an event published after those was applied)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=100).values():
                for message in records:
                    _, record = decode_record(message.value)
                    applied = record.get("events_applied")
                    if applied is not None and applied > counts.get(record["engineer_id"], 0):
                        return record
            if worker is not None and not worker.alive():
                raise AssertionError(f"worker died while waiting for a balance\n{worker.diagnosis()}")
        raise AssertionError(f"no balance beyond the given counts within {timeout_s}s")

    def close(self) -> None:
        self.consumer.close()


def lost_events(balances: dict, expected: dict[str, int], figures: dict | None = None) -> int:
    """Events not reflected in the final balances, plus events missing from
    the history (when history figures are given)."""
    lost = sum(max(0, n - balances.get(e, {}).get("events_applied", 0)) for e, n in expected.items())
    if figures is not None:
        lost += max(0, figures["expected_events"] - figures["event_ids"])
    return lost


def balance_mismatches(balances: dict, events) -> list[str]:
    """Engineers whose streamed balance differs from the offline replay as of
    the instant the balance is for."""
    by_engineer: dict[str, list] = {}
    for e in events:
        by_engineer.setdefault(e.engineer_id, []).append(e)
    bad = []
    for engineer, record in balances.items():
        want = replay(by_engineer.get(engineer, []), as_of=record["as_of"]).get(engineer)
        if want is None:
            bad.append(engineer)
            continue
        if any(record[k] != v for k, v in want.to_dict().items() if k in record):
            bad.append(engineer)
    return bad


def wait_quiet(bootstrap: str, topic: str, quiet_s: float, timeout_s: float) -> None:
    last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = len(read_records(bootstrap, topic, timeout_s=0))
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.5)
    raise AssertionError(f"{topic} never went quiet")


def assert_history_exact(figures: dict) -> None:
    """Every event and every final posting in history exactly once, and every
    engineer's postings as the replay's (figures: `history_figures`)."""
    assert figures["event_rows"] == figures["event_ids"] == figures["expected_events"], figures
    assert figures["posting_rows"] == figures["posting_keys"] == figures["expected_postings"], figures
    assert figures["engineers_with_wrong_postings"] == 0, figures


def history_figures(dsn, events, finalized_before: datetime | None) -> dict:
    """Exactly-once and correctness figures of a worker's history (`dsn`: a
    DSN, or an open store, which is left open)."""
    store = open_history(dsn) if isinstance(dsn, str) else dsn
    try:
        ids = store.event_id_counts()
        postings = store.posting_counts(collapsed=False)
        figures = {
            "event_rows": ids.rows, "event_ids": ids.distinct,
            "posting_rows": postings.rows, "posting_keys": postings.distinct,
            "expected_events": len({e.event_id for e in events}),
        }
        if finalized_before is not None:
            want = replay_detailed([e for e in events if e.type in LEDGER_EVENT_TYPES],
                                   as_of=finalized_before - timedelta(microseconds=1))
            wrong = 0
            for engineer, expected in want.postings.items():
                stored = store.postings_for(engineer)
                if [p.hash for p in stored] != [p.hash for p in expected]:
                    wrong += 1
                    continue
                verify_chain(stored)
            figures["expected_postings"] = sum(len(p) for p in want.postings.values())
            figures["engineers_with_wrong_postings"] = wrong
        return figures
    finally:
        if isinstance(dsn, str):
            store.close()


def changelog_keys(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """The keys of every committed record of a changelog, as a restore reads
    them now (read_committed, from the start; keyless records left out)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed", consumer_timeout_ms=1500)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return [message.key for message in consumer if message.key is not None]
    finally:
        consumer.close()
