"""Quix Streams ceiling: how fast an idiomatic Quix Streams app drains the
source topics when it does nothing but count (no decode, no state, no output):
the peer framework's own per-message cost, measured like `bench/faust_ceiling.py`
measures Faust's. With both, "compstream ÷ Quix twin" splits into what the
frameworks cost and what each program's own work costs.

    python -m bench.peers.quix_ceiling BOOTSTRAP EXPECTED TOPIC [TOPIC...]

Prints one JSON line. Timing starts at the first message and ends at the
EXPECTED-th.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time


def main() -> None:
    bootstrap, expected_text, *names = sys.argv[1:]
    expected = int(expected_text)
    if not names:
        raise SystemExit("usage: python -m bench.peers.quix_ceiling BOOTSTRAP EXPECTED TOPIC [TOPIC...]")
    from quixstreams import Application

    app = Application(
        broker_address=bootstrap, consumer_group=f"bench-quix-ceil-{int(time.time() * 1000)}",
        auto_offset_reset="earliest", commit_interval=1.0, processing_guarantee="at-least-once",
        loglevel=logging.WARNING,
    )
    stats = {"n": 0, "nbytes": 0, "t_first": None, "t_last": None}

    def count(value: bytes) -> None:
        if stats["t_first"] is None:
            stats["t_first"] = time.perf_counter()
        stats["n"] += 1
        stats["nbytes"] += len(value)
        if stats["n"] == expected:
            stats["t_last"] = time.perf_counter()
            app.stop()

    frames = [app.dataframe(app.topic(name, key_deserializer="bytes", value_deserializer="bytes"))
              for name in names]
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    sdf.update(count)
    t0 = time.perf_counter()
    app.run()
    t_end = time.perf_counter()
    n = stats["n"]
    dt = (stats["t_last"] or t_end) - (stats["t_first"] or t0)
    print(json.dumps({
        "client": "quixstreams", "messages": n, "seconds": round(dt, 3),
        "msgs_per_s": round(n / dt) if dt > 0 else None,
        "avg_bytes": round(stats["nbytes"] / max(n, 1), 1), "complete": n >= expected,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
