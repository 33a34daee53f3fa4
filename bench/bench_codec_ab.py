"""The worker's Avro codec, fastavro (old) against the generated code (new),
alternated in one process: CPU µs per call of `decode_record` and `decode_event`
on the bench dataset's messages, and of `encode_record("BalanceUpdate", …)` on
the balance records the checkpoint core writes for them; then the whole
`LedgerCore.step` (CPU µs per event) with and without the generated code.
Every call's result is also compared old vs new (bytes, values; a sha256 over
the step's records). In-process, single thread:

    python -m bench.bench_codec_ab [--events N] [--engineers M] [--rounds R]

Prints one JSON line. Used for bench/profile_notes.md (2026-12-06, codec).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from compstream.codec import avro_codec, encode_event
from compstream.config import Topics
from compstream.domain.event_fast import build_event
from compstream.domain.events import event_from_dict
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.messages import SourceMessage, partition_of

PARTITIONS = 4


TOPICS = Topics.with_prefix("codecbench")
BATCH = 5_000


def _core() -> LedgerCore:
    core = LedgerCore(CoreConfig(TOPICS, "codecbench", PARTITIONS, 6 * 3600, 256 * 1024))
    for p in range(PARTITIONS):
        core.restore(p, [], {})
    return core


def dataset(events_n: int, engineers: int) -> tuple[list[SourceMessage], list[dict]]:
    """The events as source messages, and the BalanceUpdate records the core writes for them."""
    from bench.run import events_for

    events = events_for(events_n, engineers)
    topics = TOPICS
    core = _core()
    now = datetime.now(timezone.utc)
    offsets: Counter = Counter()
    msgs = []
    for e in [e for e in events if e.type != "usage"] + [e for e in events if e.type == "usage"]:
        p = partition_of(e.engineer_id, PARTITIONS)
        topic = topics.usage if e.type == "usage" else topics.grants
        msgs.append(SourceMessage(topic, p, offsets[(topic, p)], e.engineer_id.encode(), encode_event(e), now))
        offsets[(topic, p)] += 1
    balances: list[dict] = []  # the BalanceUpdate records the step wrote, read back
    for i in range(0, len(msgs), BATCH):
        checkpoint = core.step(msgs[i:i + BATCH])
        core.committed()  # as an engine does once the checkpoint is durable
        for r in checkpoint.records:
            if r.topic == topics.balances:
                name, record = avro_codec.decode_record_fastavro(r.value)
                if name == "BalanceUpdate":
                    balances.append(record)
    return msgs, balances


@contextmanager
def fastavro_only() -> Iterator[None]:
    """The codec as it was: every schema without its generated functions."""
    registries = (avro_codec.SCHEMAS, avro_codec._BY_FINGERPRINT)
    saved = [dict(r) for r in registries]
    for registry in registries:
        for key, entry in registry.items():
            registry[key] = dataclasses.replace(entry, fast_encode=None, fast_decode=None)
    try:
        yield
    finally:
        for registry, before in zip(registries, saved, strict=True):
            registry.update(before)


def step_cpu_us(msgs: list[SourceMessage]) -> tuple[float, str]:
    """Process CPU µs per event of LedgerCore.step over `msgs` on a fresh
    core, and a sha256 over every record it returned."""
    core = _core()
    digest = hashlib.sha256()
    gc.collect()
    c0 = time.process_time()
    for i in range(0, len(msgs), BATCH):
        checkpoint = core.step(msgs[i:i + BATCH])
        core.committed()  # as an engine does once the checkpoint is durable
        for r in checkpoint.records:
            digest.update(repr((r.topic, r.key, r.value, r.partition)).encode())
    return (time.process_time() - c0) / len(msgs) * 1e6, digest.hexdigest()


def _decode_event_old(data: bytes):
    """decode_event with the fastavro reader (same steps as avro_codec.decode_event)."""
    name, record = avro_codec.decode_record_fastavro(data)
    record["type"] = avro_codec.EVENT_RECORDS[name]
    event = build_event(record)
    return event if event is not None else event_from_dict(record)


def _per_call_us(fn, items) -> float:
    """Process CPU µs per call (steadier than wall time on a shared machine)."""
    gc.collect()
    t0 = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - t0) / len(items) * 1e6


def run(events_n: int, engineers: int, rounds: int, step_rounds: int) -> dict:
    msgs, balances = dataset(events_n, engineers)
    values = [m.value for m in msgs]
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
    # The whole checkpoint step (decode + ledger + encode), CPU time, same outputs.
    steps: dict[str, list[float]] = {"old": [], "new": []}
    digests = set()
    for i in range(step_rounds):
        for variant in (("old", "new") if i % 2 == 0 else ("new", "old")):
            if variant == "old":
                with fastavro_only():
                    us, digest = step_cpu_us(msgs)
            else:
                us, digest = step_cpu_us(msgs)
            steps[variant].append(round(us, 1))
            digests.add(digest)
    if len(digests) > 1:
        raise SystemExit("the step's records differ between fastavro and the generated codec")
    if step_rounds:
        out["step_cpu_us"] = steps | {"new_over_old": [round(n / o, 3) for o, n in
                                                       zip(steps["old"], steps["new"], strict=True)],
                                      "records_identical": True}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--engineers", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--step-rounds", type=int, default=2, help="pairs of whole-step runs (0: none)")
    args = ap.parse_args()
    print(json.dumps(run(args.events, args.engineers, args.rounds, args.step_rounds)))


if __name__ == "__main__":
    main()
