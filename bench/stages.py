"""Per-stage micro benchmarks, each printing one JSON line (run as subprocesses):

    python -m bench.stages decode  --events N
    python -m bench.stages ledger  --events N --engineers M
    python -m bench.stages history --rows N

decode  : Avro body decode per message with the `avro` library vs fastavro,
          then the project's decode_record / decode_event (framing + validation).
ledger  : EngineerBook.ingest per event (books kept as objects), the worker's
          pure batch step LedgerProcessor.process (decode + apply + history rows +
          book (de)serialization + balance encoding, 2,000-message batches, like
          the agent), `replay` as one batch, and state bytes per engineer.
history : HistoryBatch of EventRows appended to the embedded ClickHouse (chdb) at
          batch sizes 100 / 1k / 10k, rows/s (row building timed separately).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import resource
import shutil
import tempfile
import time
from collections import Counter
from datetime import timezone

from bench.common import LATENESS_S
from compstream.codec import decode_event, decode_record, encode_event
from compstream.codec.avro_codec import _BY_FINGERPRINT, HEADER_LENGTH, schema_dir
from compstream.synth import generate


def _rate(n: int, dt: float) -> int:
    return round(n / dt) if dt > 0 else 0


def _peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def sample_events(events: int, engineers: int) -> list:
    usage = max(1, events - engineers - engineers // 3 - engineers // 17 - engineers // 29)
    return list(generate(engineers, usage))


def bench_decode(n: int) -> dict:
    import avro.io
    import avro.schema
    import fastavro

    events = [e for e in sample_events(n, max(10, n // 100)) if e.type == "usage"][:n]
    blobs = [encode_event(e) for e in events]
    out: dict = {"messages": len(blobs), "avg_bytes": round(sum(map(len, blobs)) / len(blobs), 1)}
    entry = _BY_FINGERPRINT[bytes(blobs[0][2:HEADER_LENGTH])]
    parsed_avro = {}
    for path in schema_dir().glob("*.avsc"):
        raw = json.loads(path.read_text())
        parsed_avro[raw["name"]] = avro.schema.parse(json.dumps(raw))
    reader = avro.io.DatumReader(parsed_avro[entry.name])
    bodies = [b[HEADER_LENGTH:] for b in blobs]

    def timeit(label, fn, items):
        gc.collect()
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        dt = time.perf_counter() - t0
        out[label] = _rate(len(items), dt)
        out[label + "_us"] = round(dt / len(items) * 1e6, 2)

    sub = bodies[: max(1000, len(bodies) // 10)]  # avro (pure Python) is slow: a tenth
    timeit("avro_lib", lambda b: reader.read(avro.io.BinaryDecoder(io.BytesIO(b))), sub)
    timeit("fastavro", lambda b: fastavro.schemaless_reader(io.BytesIO(b), entry.parsed, None), bodies)
    timeit("decode_record", decode_record, blobs)
    timeit("decode_event", decode_event, blobs)
    timeit("encode_event", encode_event, events)
    out["unit"] = "messages/s (and µs/message)"
    return out


def bench_ledger(n: int, engineers: int) -> dict:
    from datetime import timedelta

    from compstream.domain.book import EngineerBook
    from compstream.domain.replay import replay
    from compstream.worker.processor import LedgerProcessor, SourceMessage, partition_of

    events = sample_events(n, engineers)
    out: dict = {"events": len(events), "engineers": engineers,
                 "events_per_engineer": round(len(events) / engineers, 1)}
    lateness = timedelta(seconds=LATENESS_S)

    # 1. ingest per event, books as live objects, watermark = max seen - lateness
    gc.collect()
    books: dict[str, EngineerBook] = {}
    t0 = time.perf_counter()
    maxt = None
    first = events[0].event_time
    late = 0
    for e in events:
        # Watermark from usage time only: synth puts effective-dated grants (up
        # to +14 d) first; the worker holds its watermark back to the usage
        # topic while that has a backlog, which this mimics.
        t = e.event_time
        if e.type == "usage" and (maxt is None or t > maxt):
            maxt = t
        b = books.get(e.engineer_id)
        if b is None:
            b = books[e.engineer_id] = EngineerBook.empty(e.engineer_id)
        late += b.ingest(e, (maxt or first) - lateness).late
    dt = time.perf_counter() - t0
    out["ingest_late_events"] = late
    out["ingest_events_per_s"] = _rate(len(events), dt)
    sizes = [len(b.to_bytes()) for b in books.values()]
    out["state_bytes_per_engineer_avg"] = round(sum(sizes) / len(sizes), 1)
    out["state_bytes_per_engineer_max"] = max(sizes)
    seen_bytes = sum(16 * len(b.seen) for b in books.values()) / len(books)
    out["state_seen_ids_bytes_avg"] = round(seen_bytes, 1)
    out["pending_events_avg"] = round(sum(len(b.pending) for b in books.values()) / len(books), 1)
    gc.collect()
    t0 = time.perf_counter()
    blobs = {k: b.to_bytes() for k, b in books.items()}
    t_ser = time.perf_counter() - t0
    t0 = time.perf_counter()
    for v in blobs.values():
        EngineerBook.from_bytes(v)
    t_de = time.perf_counter() - t0
    out["book_to_bytes_us"] = round(t_ser / len(blobs) * 1e6, 1)
    out["book_from_bytes_us"] = round(t_de / len(blobs) * 1e6, 1)
    del books, blobs

    # 2. the worker's pure batch step, as the agent drives it (2,000 per batch)
    partitions = 4
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(LATENESS_S, load_book=store.get, partitions=partitions)
    from datetime import datetime
    now = datetime.now(timezone.utc)
    msgs = []
    offsets: Counter = Counter()
    for e in events:
        p = partition_of(e.engineer_id, partitions)
        topic = "usage" if e.type == "usage" else "grants"
        msgs.append(SourceMessage(topic, p, offsets[(topic, p)], e.engineer_id.encode(), encode_event(e), now))
        offsets[(topic, p)] += 1
    gc.collect()
    t0 = time.perf_counter()
    balances = 0
    for i in range(0, len(msgs), 2000):
        res = proc.process(msgs[i:i + 2000], keys=lambda: list(store), sweep=False, lagging=())  # noqa: F821 - called before the del below
        for eng, (data, _p) in res.books.items():
            store[eng] = data
        balances += len(res.balances)
    dt = time.perf_counter() - t0
    out["processor_events_per_s"] = _rate(len(msgs), dt)
    out["processor_balances_per_event"] = round(balances / len(msgs), 3)
    del msgs, store, proc

    # 3. replay, one batch
    gc.collect()
    t0 = time.perf_counter()
    replay(events)
    dt = time.perf_counter() - t0
    out["replay_events_per_s"] = _rate(len(events), dt)
    out["peak_rss_mib"] = _peak_mib()
    return out


def bench_history(rows: int, sizes=(100, 1000, 10000)) -> dict:
    from compstream.history import HistoryBatch, open_history
    from compstream.history.rows import EventRow

    events = [e for e in sample_events(rows, max(10, rows // 100))][:rows]
    now = __import__("datetime").datetime.now(timezone.utc)
    gc.collect()
    t0 = time.perf_counter()
    event_rows = [EventRow.from_event(e, topic="bench.usage", partition=0, offset=i, ingest_time=now)
                  for i, e in enumerate(events)]
    dt = time.perf_counter() - t0
    out: dict = {"rows": len(event_rows), "eventrow_build_rows_per_s": _rate(len(event_rows), dt)}
    tmp = tempfile.mkdtemp(prefix="bench_chdb.")
    store = open_history(f"chdb://{tmp}/ch")
    store.migrate()
    try:
        offset_base = 0
        for size in sizes:
            # distinct offsets per size so no insert is deduplicated away
            batches = []
            for i in range(0, len(event_rows), size):
                chunk = tuple(r.__class__(**{**_asdict(r), "kafka_offset": offset_base + r.kafka_offset})
                              for r in event_rows[i:i + size])
                batches.append(chunk)
            offset_base += len(event_rows)
            gc.collect()
            t0 = time.perf_counter()
            for j, chunk in enumerate(batches):
                store.append_batch(HistoryBatch(events=chunk), f"bench:{size}:{j}")
            dt = time.perf_counter() - t0
            out[f"insert_{size}_rows_per_s"] = _rate(len(event_rows), dt)
            out[f"insert_{size}_ms_per_batch"] = round(dt / len(batches) * 1000, 2)
        out["table_counts"] = store.table_counts()
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    out["peak_rss_mib"] = _peak_mib()
    return out


def _asdict(row) -> dict:
    return {name: getattr(row, name) for name in row.__dataclass_fields__}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("decode", "ledger", "history"))
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--engineers", type=int, default=2_000)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    if args.what == "decode":
        out = bench_decode(args.events)
    elif args.what == "ledger":
        out = bench_ledger(args.events, args.engineers)
    else:
        out = bench_history(args.rows)
    out["stage"] = args.what
    print(json.dumps(out))


if __name__ == "__main__":
    main()
