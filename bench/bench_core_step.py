"""The transactional engine's CPU per event without Kafka: `LedgerCore.step`
(the checkpoint core both engines share) over the bench dataset, cut into
batches of the engine's size, under the engine's collector settings
(worker.run.tune_gc), with the time of its two big parts (wall; the whole
step also as process CPU time, steadier on a shared machine) and what a
checkpoint writes per event (records and bytes per topic), and the cyclic
GC's share. With `--history-ab`, also times the history topic's encoding
(version 2: column names once, rows as arrays) against version 1 (each row
an object of its columns, orjson's native dataclass encoding), with the
bytes of each, and checks that both decode to the same rows (it keeps every
history row of the run alive for that, which the engine does not: the
collector then scans them, ~3 µs an event more).
In-process, single thread:

    python -m bench.bench_core_step [--events N] [--engineers M] [--batch B] [--digest] [--history-ab] [--live-s S]

`--digest` adds `digest`: a sha256 over every record `step` returns (topic,
key, value, partition; for a history record each of its rows instead of the
value, so where records cut the rows does not count) and the offsets of
every checkpoint, in order. The
dataset is seeded and the message timestamps fixed, so the digest is the same
in every process: a change to the core that keeps it keeps every output
(changelog books, balances, alerts, history rows) byte for byte.

Prints one JSON line. Used for bench/profile_notes.md (2026-12-06).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import orjson

from compstream.codec import encode_event
from compstream.config import Topics
from compstream.history import wire
from compstream.synth import generate
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.messages import SourceMessage, partition_of
from compstream.worker.run import tune_gc

PARTITIONS = 4
LATENESS_S = 6 * 3600
BOOK_BYTES_MAX = 256 * 1024
# Every message's Kafka timestamp (the history rows' ingest_time): fixed, so the digest is reproducible.
INGEST_TIME = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _digest_checkpoint(h, checkpoint, history_topic: str) -> None:
    for r in checkpoint.records:
        if r.topic == history_topic:  # the rows, not where the records cut them
            for name, rows in orjson.loads(r.value).items():
                for row in rows if name != "v" else ():
                    h.update(repr((r.topic, r.key, name, orjson.dumps(row), r.partition)).encode())
            continue
        h.update(repr((r.topic, r.key, r.value, r.partition)).encode())
    h.update(repr(sorted(checkpoint.offsets.items())).encode())


def _version_1(batch) -> bytes:
    """The history record of wire version 1: orjson serializing the row
    dataclasses itself, each row an object of its columns."""
    doc: dict = {"v": 1}
    for name, rows in batch.by_table.items():
        if rows:
            doc[name] = list(rows)
    return orjson.dumps(doc, default=wire._default, option=orjson.OPT_NAIVE_UTC)


def backlog_core(events: list, name: str) -> tuple[LedgerCore, list[SourceMessage]]:
    """A core holding every partition, and the events as its source messages:
    HR first, then usage (the order the task synchronization applies a
    backlog in), each topic-partition numbered from offset 0."""
    topics = Topics.with_prefix(name)
    core = LedgerCore(CoreConfig(topics, name, PARTITIONS, LATENESS_S, BOOK_BYTES_MAX))
    for p in range(PARTITIONS):
        core.restore(p, [], {})
    offsets: Counter = Counter()
    msgs = []
    for e in [e for e in events if e.type != "usage"] + [e for e in events if e.type == "usage"]:
        p = partition_of(e.engineer_id, PARTITIONS)
        topic = topics.usage if e.type == "usage" else topics.grants
        msgs.append(SourceMessage(topic, p, offsets[(topic, p)], e.engineer_id.encode(), encode_event(e),
                                  INGEST_TIME))
        offsets[(topic, p)] += 1
    return core, msgs


def run(events_n: int, engineers: int, batch_size: int, digest: bool = False, history_ab: bool = False,
        live_s: float | None = None) -> dict:
    from bench.run import events_for

    if live_s is None:
        events = events_for(events_n, engineers)
    else:  # the latency run's data: usage over live_s seconds, all of it within the lateness (pending)
        events = [e for e in generate(engineers, events_n, seed=11, usage_span=timedelta(seconds=live_s))
                  if e.type in ("grant_issued", "usage")]
    core, msgs = backlog_core(events, "corebench")
    del events
    spent: Counter = Counter()
    history_batches = []
    process, history_records = core.processor.process, core._history_records

    def timed_process(*a, **kw):
        t0 = time.perf_counter()
        try:
            return process(*a, **kw)
        finally:
            spent["process"] += time.perf_counter() - t0

    def timed_history(batch):
        if history_ab:
            history_batches.append(batch)
        t0 = time.perf_counter()
        try:
            return history_records(batch)
        finally:
            spent["history_records"] += time.perf_counter() - t0

    core.processor.process = timed_process
    core._history_records = timed_history
    count: Counter = Counter()
    size: Counter = Counter()
    h = hashlib.sha256()
    # The engine's collector settings (run_worker calls tune_gc): with
    # CPython's defaults this loop spends ~15-20 % more in full collections
    # over the live books than the engine does (bench/profile_notes.md, 12-06).
    tune_gc()
    gc_started: list[float] = []

    def gc_timer(phase: str, info: dict) -> None:  # CPU time inside the cyclic collector
        if phase == "start":
            gc_started.append(time.process_time())
        elif gc_started:
            spent["gc"] += time.process_time() - gc_started.pop()
            count[f"gc{info['generation']}"] += 1

    gc.callbacks.append(gc_timer)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(0, len(msgs), batch_size):
        checkpoint = core.step(msgs[i:i + batch_size])
        core.committed()  # as an engine does once the checkpoint is durable (the web view's books)
        if digest:
            _digest_checkpoint(h, checkpoint, core.history)
        for r in checkpoint.records:
            count[r.topic] += 1
            size[r.topic] += len(r.value or b"")
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    gc.callbacks.remove(gc_timer)
    collections = {g: count.pop(g, 0) for g in ("gc0", "gc1", "gc2")}
    n = len(msgs)
    per = lambda s: round(s / n * 1e6, 1)  # noqa: E731 - µs per event
    out = {"digest": h.hexdigest()} if digest else {}
    out |= {
        "events": n, "engineers": engineers, "batch": batch_size,
        "step_events_per_s": round(n / dt), "step_us": per(dt), "step_cpu_us": per(cpu),
        "gc_cpu_us": per(spent["gc"]), "collections": collections,
        "process_us": per(spent["process"]), "history_records_us": per(spent["history_records"]),
        "records_per_event": {t: round(c / n, 3) for t, c in count.items()},
        "bytes_per_event": {t: round(s / n) for t, s in size.items()},
    }
    if history_ab:
        same_rows = all(wire.decode_batch(_version_1(b)) == wire.decode_batch(wire.encode_batch(b))
                        for b in history_batches)
        timed: dict[str, list[float]] = {"v2": [], "v1": []}
        sizes = {}
        for name, encode in [("v2", wire.encode_batch), ("v1", _version_1)] * 2:  # alternated, best of two
            t0 = time.perf_counter()
            sizes[name] = sum(len(encode(b)) for b in history_batches)
            timed[name].append(time.perf_counter() - t0)
        out |= {"history_encode_v2_us": per(min(timed["v2"])), "history_encode_v1_us": per(min(timed["v1"])),
                "history_bytes_per_event_v2": round(sizes["v2"] / n),
                "history_bytes_per_event_v1": round(sizes["v1"] / n),
                "history_v1_v2_same_rows": same_rows}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--engineers", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--digest", action="store_true",
                    help="hash every output record (adds the hashing to the timed loop)")
    ap.add_argument("--live-s", type=float, default=None,
                    help="the usage's event times span this many seconds (a live load: every event pending)")
    ap.add_argument("--history-ab", action="store_true",
                    help="keep the history batches and time their encoding against orjson's native one")
    args = ap.parse_args()
    print(json.dumps(run(args.events, args.engineers, args.batch, args.digest, args.history_ab, args.live_s)))


if __name__ == "__main__":
    main()
