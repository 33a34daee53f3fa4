"""The worker's Avro codec, fastavro (old) against the generated code (new),
alternated in one process: µs per call of `decode_record` and `decode_event`
on the bench dataset's messages, and of `encode_record("BalanceUpdate", …)` on
the balance records the checkpoint core writes for them. Every call's result
is also compared old vs new (bytes, values). In-process, single thread:

    python -m bench.bench_codec_ab [--events N] [--engineers M] [--rounds R]

Prints one JSON line. Used for bench/profile_notes.md (2026-12-06, codec).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections import Counter
from datetime import datetime, timezone
from unittest import mock

from compstream.codec import avro_codec, encode_event
from compstream.config import Topics
from compstream.domain.event_fast import build_event
from compstream.domain.events import event_from_dict
from compstream.worker import processor
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.messages import SourceMessage, partition_of

PARTITIONS = 4


def dataset(events_n: int, engineers: int) -> tuple[list[bytes], list[dict]]:
    """The encoded events, and the BalanceUpdate records the core writes for them."""
    from bench.run import events_for

    events = events_for(events_n, engineers)
    topics = Topics.with_prefix("codecbench")
    core = LedgerCore(CoreConfig(topics, "codecbench", PARTITIONS, 6 * 3600, 256 * 1024))
    for p in range(PARTITIONS):
        core.restore(p, [], {})
    now = datetime.now(timezone.utc)
    offsets: Counter = Counter()
    msgs = []
    for e in [e for e in events if e.type != "usage"] + [e for e in events if e.type == "usage"]:
        p = partition_of(e.engineer_id, PARTITIONS)
        topic = topics.usage if e.type == "usage" else topics.grants
        msgs.append(SourceMessage(topic, p, offsets[(topic, p)], e.engineer_id.encode(), encode_event(e), now))
        offsets[(topic, p)] += 1
    balances: list[dict] = []

    def capture(name: str, record: dict) -> bytes:
        if name == "BalanceUpdate":
            balances.append(dict(record))
        return avro_codec.encode_record(name, record)

    with mock.patch.object(processor, "encode_record", capture):
        for i in range(0, len(msgs), 5_000):
            core.step(msgs[i:i + 5_000])
    return [m.value for m in msgs], balances


def _decode_event_old(data: bytes):
    """decode_event with the fastavro reader (same steps as avro_codec.decode_event)."""
    name, record = avro_codec.decode_record_fastavro(data)
    record["type"] = avro_codec.EVENT_RECORDS[name]
    event = build_event(record)
    return event if event is not None else event_from_dict(record)


def _per_call_us(fn, items) -> float:
    gc.collect()
    t0 = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - t0) / len(items) * 1e6


def run(events_n: int, engineers: int, rounds: int) -> dict:
    values, balances = dataset(events_n, engineers)
    old_balance = avro_codec.encode_record_fastavro
    new_balance = avro_codec.encode_record
    # Same results first: bytes of every balance, values of every message.
    for record in balances:
        if old_balance("BalanceUpdate", record) != new_balance("BalanceUpdate", record):
            raise SystemExit(f"BalanceUpdate bytes differ: {record}")
    for data in values:
        if avro_codec.decode_record_fastavro(data) != avro_codec.decode_record(data):
            raise SystemExit(f"decoded values differ: {data!r}")
        if _decode_event_old(data) != avro_codec.decode_event(data):
            raise SystemExit(f"decoded events differ: {data!r}")
    cases = {
        "decode_record": (avro_codec.decode_record_fastavro, avro_codec.decode_record, values),
        "decode_event": (_decode_event_old, avro_codec.decode_event, values),
        "encode_balance": (lambda r: old_balance("BalanceUpdate", r),
                           lambda r: new_balance("BalanceUpdate", r), balances),
    }
    times: dict[str, dict[str, list[float]]] = {k: {"old": [], "new": []} for k in cases}
    for i in range(rounds):
        order = ("old", "new") if i % 2 == 0 else ("new", "old")
        for name, (old, new, items) in cases.items():
            for variant in order:
                times[name][variant].append(_per_call_us(old if variant == "old" else new, items))
    out: dict = {"events": len(values), "balances": len(balances), "rounds": rounds,
                 "balances_per_event": round(len(balances) / len(values), 3), "identical": True}
    for name, t in times.items():
        pairs = [round(n / o, 3) for o, n in zip(t["old"], t["new"], strict=True)]
        out[name] = {"old_us": [round(x, 2) for x in t["old"]], "new_us": [round(x, 2) for x in t["new"]],
                     "new_over_old": pairs, "median_ratio": sorted(pairs)[len(pairs) // 2]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--engineers", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    print(json.dumps(run(args.events, args.engineers, args.rounds)))


if __name__ == "__main__":
    main()
