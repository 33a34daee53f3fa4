"""The compstream balance logic written as an idiomatic Quix Streams app: the
peer ("twin") the worker is compared with. Bench-only; run as a subprocess:

    python -m bench.peers.quix_balances BOOTSTRAP USAGE_TOPIC GRANTS_TOPIC OUT_TOPIC EXPECTED STATE_DIR

What the twin does (per message, Quix's model):
  * consumes the usage and grants topics (same topics, partitions and records as
    the worker) as one StreamingDataFrame (`concat`), keyed by engineer;
  * decodes with the project's codec (`decode_event`), skips undecodable records;
  * `apply(..., stateful=True)`: loads the engineer's EngineerBook from Quix's
    RocksDB state (bytes), `ingest`s the event with watermark = max usage event time of
    the partition - 6 h (the worker's default lateness), stores the book back
    (`to_bytes`) — state is changelogged by Quix (like the Faust table);
  * publishes one BalanceUpdate (the worker's `encode_balance`) per event to
    its own output topic.
What it does not do (the worker does): no ClickHouse history (events,
postings, dead letters), no alerts/report/dead-letter topics, no sweep of
quiet books, no lagging-topic hold-back of the watermark (the partition max
lives in process memory, not in state), and one balance per event instead of
one per engineer per batch. So it does strictly less I/O than the worker but
(de)serializes the book on every message instead of once per batch.
Prints one JSON line: events/s from first processed message to the EXPECTED-th.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import datetime, timedelta, timezone

LATENESS = timedelta(hours=6)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def main() -> None:
    bootstrap, usage_name, grants_name, out_name, expected_s, state_dir = sys.argv[1:7]
    expected = int(expected_s)
    import logging

    from quixstreams import Application, message_context

    from compstream.codec import DecodeError, decode_event
    from compstream.domain.book import EngineerBook
    from compstream.domain.events import EventError
    from compstream.worker.processor import encode_balance

    app = Application(
        broker_address=bootstrap, consumer_group=f"bench-quix-{int(time.time())}",
        auto_offset_reset="earliest", state_dir=state_dir, commit_interval=1.0,
        processing_guarantee="at-least-once", loglevel=logging.WARNING,
    )
    usage = app.topic(usage_name, key_deserializer="bytes", value_deserializer="bytes")
    grants = app.topic(grants_name, key_deserializer="bytes", value_deserializer="bytes")
    out_topic = app.topic(out_name, key_serializer="bytes", value_serializer="bytes")

    stream_time: dict[int, datetime] = {}
    stats = {"n": 0, "bad": 0, "t_first": None, "t_last": None}

    def apply_event(value: bytes, state):
        if stats["t_first"] is None:
            stats["t_first"] = time.perf_counter()
        stats["n"] += 1
        if stats["n"] >= expected:
            stats["t_last"] = time.perf_counter()
            app.stop()
        try:
            event = decode_event(value)
        except (DecodeError, EventError):
            stats["bad"] += 1
            return None
        partition = message_context().partition
        t = event.event_time
        # Partition time from usage only, as in the worker: grants are
        # effective-dated (synth issues bonuses up to 14 days ahead).
        if event.type == "usage" and t > stream_time.get(partition, EPOCH):
            stream_time[partition] = t
        watermark = stream_time.get(partition, EPOCH) - LATENESS
        data = state.get_bytes("book")
        book = EngineerBook.from_bytes(data) if data else EngineerBook.empty(event.engineer_id)
        book.ingest(event, watermark)
        state.set_bytes("book", book.to_bytes())
        return encode_balance(event.engineer_id, book, watermark, stream_time.get(partition))

    sdf = app.dataframe(usage).concat(app.dataframe(grants))
    sdf = sdf.apply(apply_event, stateful=True)
    sdf = sdf.filter(lambda v: v is not None)
    sdf.to_topic(out_topic)
    t0 = time.perf_counter()
    app.run()
    t_end = time.perf_counter()
    dt = (stats["t_last"] or t_end) - (stats["t_first"] or t0)
    print(json.dumps({
        "peer": "quixstreams", "processed": stats["n"], "bad": stats["bad"],
        "complete": stats["n"] >= expected, "seconds": round(dt, 2),
        "events_per_s": round(stats["n"] / dt) if dt > 0 else None,
        "wall_s": round(t_end - t0, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
