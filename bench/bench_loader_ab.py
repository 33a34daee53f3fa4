"""One transactional worker with its embedded history loader
(COMPSTREAM_HISTORY_SINK=embedded: a child process since 2026-12-06 06:10,
a thread sharing the worker's GIL before) against
none (external: a `compstream sink` elsewhere loads the topic), alternated on
one broker this script starts:

    python -m bench.bench_loader_ab [--events N] [--engineers M] [--rounds R]

Prints one JSON line per run. Used for bench/profile_notes.md (2026-12-06).
"""

from __future__ import annotations

import argparse
import json

from bench import common, e2e
from compstream.broker.topics import ensure_topics

PARTITIONS = 4


def main() -> None:
    from bench.run import events_for

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--engineers", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    events = events_for(args.events, args.engineers)
    with e2e.local_broker("bench_loader_ab.", PARTITIONS) as info:
        for i in range(args.rounds * 2):
            sink = ("external", "embedded")[i % 2]
            topics = common.bench_topics(f"loaderab{i}")
            ensure_topics(info.bootstrap, topics, PARTITIONS)
            common.produce(info.bootstrap, topics, events)
            r = e2e.throughput(info.bootstrap, topics, events, PARTITIONS,
                               env={**e2e.TRANSACTIONAL, "COMPSTREAM_HISTORY_SINK": sink})
            print(json.dumps({"history_sink": sink, "sustained_events_per_s": r.get("sustained_events_per_s"),
                              "from_spawn_s": r.get("wall_from_spawn_s"), "peak_rss_mib": r.get("worker_peak_rss_mib"),
                              "loader_peak_rss_mib": r.get("loader_peak_rss_mib"),
                              "history_loaded_from_spawn_s": r.get("history_loaded_from_spawn_s"),
                              "engineers_wrong": r.get("engineers_wrong_count")}), flush=True)

if __name__ == "__main__":
    main()
