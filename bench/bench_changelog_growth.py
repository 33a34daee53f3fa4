"""Changelog bytes a busy book costs, day after day (in-process, no Kafka).

Engineers with a steady usage rate (`--per-day` usage events each, spread
evenly, event time moving like a live system's), cut into one batch per
`--batch-s` seconds of event time (a live worker's batches hold each busy
engineer's one or two latest events), through `LedgerCore.step` at the
default lateness and dedupe horizon. Per day: the books changelog's bytes
written per usage event and per book write, and the average book (what the
core holds: its unsealed and sealed ids, pending usage, ledger), and the usage
refused because a book was full (dead letters with stage `book_full`: the
rate one engineer's book can take, see docs/runbook.md). A book is one
record until it has sealed days; then its head and its changed segments
(worker/book_changelog.py).

    python -m bench.bench_changelog_growth [--engineers N] [--per-day M] [--days D] [--batch-s S] [--lateness-s L]
        [--book-bytes-max B]

Prints one JSON line per reported day, then a summary line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from datetime import timedelta

from compstream.codec import decode_record, encode_event
from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.synth import START, generate
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.messages import SourceMessage, partition_of
from compstream.worker.positions import is_position_key
from compstream.worker.processor import BOOK_FULL

PARTITIONS = 4
LATENESS_S = 6 * 3600


def run(engineers: int, per_day: int, days: int, batch_s: float, book_bytes_max: int = BOOK_BYTES_MAX,
        lateness_s: int = LATENESS_S) -> list[dict]:
    events = [e for e in generate(engineers, engineers * per_day * days, seed=5, usage_span=timedelta(days=days))
              if e.type in ("grant_issued", "usage")]
    topics = Topics.with_prefix("growth")
    core = LedgerCore(CoreConfig(topics, "growth", PARTITIONS, lateness_s, book_bytes_max))
    for p in range(PARTITIONS):
        core.restore(p, [], {})
    offsets: Counter = Counter()
    written, writes, usage, refused = Counter(), Counter(), Counter(), Counter()
    largest: Counter = Counter()  # the day's largest books changelog record (the broker's limit is 1 MiB)
    batch: list[SourceMessage] = []
    out: list[dict] = []

    def step(day: int) -> None:
        checkpoint = core.step(batch)
        core.committed()
        for r in checkpoint.records:
            if r.topic == core.changelog and r.key is not None and not is_position_key(r.key.decode()):
                written[day] += len(r.key) + len(r.value or b"")
                largest[day] = max(largest[day], len(r.value or b""))
                writes[day] += r.value is not None and r.value[:1] == b"C"  # a book or a head
            elif r.topic == topics.dead_letters and r.value is not None:
                refused[day] += decode_record(r.value)[1]["stage"] == BOOK_FULL
        batch.clear()

    cut = START + timedelta(seconds=batch_s)
    day = 0
    for e in events:
        at = e.event_time if e.type == "usage" else START
        if at >= cut and batch:
            step(day)
            cut = at + timedelta(seconds=batch_s)
        if (at - START).days != day and not batch:
            sizes = [len(v) for v in core.books.values()]
            out.append({"day": day, "usage": usage[day], "refused_book_full": refused[day],
                        "changelog_bytes_per_usage": round(written[day] / max(1, usage[day])),
                        "changelog_bytes_per_book_write": round(written[day] / max(1, writes[day])),
                        "book_bytes_avg": round(sum(sizes) / max(1, len(sizes))),
                        "record_bytes_max": largest[day]})
            day = (at - START).days
        p = partition_of(e.engineer_id, PARTITIONS)
        topic = topics.usage if e.type == "usage" else topics.grants
        batch.append(SourceMessage(topic, p, offsets[(topic, p)], e.engineer_id.encode(), encode_event(e), at))
        offsets[(topic, p)] += 1
        usage[day] += e.type == "usage"
    if batch:
        step(day)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engineers", type=int, default=20)
    ap.add_argument("--per-day", type=int, default=1000)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--batch-s", type=float, default=60.0)
    ap.add_argument("--lateness-s", type=int, default=LATENESS_S)
    ap.add_argument("--book-bytes-max", type=int, default=BOOK_BYTES_MAX)
    args = ap.parse_args()
    t0 = time.perf_counter()
    days = run(args.engineers, args.per_day, args.days, args.batch_s, args.book_bytes_max, args.lateness_s)
    for row in days:
        print(json.dumps(row))
    total = sum(r["changelog_bytes_per_usage"] * r["usage"] for r in days)
    print(json.dumps({"engineers": args.engineers, "per_day": args.per_day, "days": args.days,
                      "batch_s": args.batch_s, "lateness_s": args.lateness_s,
                      "book_bytes_max": args.book_bytes_max,
                      "record_bytes_max_all_days": max((r["record_bytes_max"] for r in days), default=0),
                      "refused_book_full_all_days": sum(r["refused_book_full"] for r in days),
                      "changelog_bytes_per_usage_all_days": round(total / max(1, sum(
                          r["usage"] for r in days))), "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
