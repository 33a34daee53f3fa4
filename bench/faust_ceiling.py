"""Faust ceiling: how fast a Faust agent drains the source topics when it does
nothing but take batches and ack them, with the worker's consumer settings and
the same `noack_take(BATCH_EVENTS_MAX, within=BATCH_WITHIN_S)` loop (no decode, no state, no output).
The gap between this and the aiokafka ceiling is the framework's per-message
cost; the gap between this and the worker is compstream's own work.

    python -m bench.faust_ceiling BOOTSTRAP EXPECTED TOPIC [TOPIC...]

Prints one JSON line. Timing starts at the first batch and ends when EXPECTED
messages were acked.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import uuid


def main() -> None:
    bootstrap, expected_text, *names = sys.argv[1:]
    expected = int(expected_text)
    import faust

    from compstream.config import BATCH_EVENTS_MAX
    from compstream.worker.engines.faust.app import BATCH_WITHIN_S

    app = faust.App(
        f"bench-faust-ceil-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", store="memory://",
        datadir=tempfile.mkdtemp(prefix="bench_faust_ceil."), web_enabled=False,
        consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once",
        broker_commit_every=BATCH_EVENTS_MAX, broker_commit_interval=1.0, topic_allow_declare=True,
    )
    source = app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    state = {"n": 0, "nbytes": 0, "batches": 0, "t_first": None}
    deadline = time.monotonic() + 1800

    @app.agent(source)
    async def count(stream):
        async for events in stream.noack_take(BATCH_EVENTS_MAX, within=BATCH_WITHIN_S):
            if state["t_first"] is None:
                state["t_first"] = time.perf_counter()
            state["n"] += len(events)
            state["batches"] += 1
            for event in events:
                state["nbytes"] += len(event.message.value)
                await stream.ack(event)
            if state["n"] >= expected or time.monotonic() > deadline:
                dt = time.perf_counter() - state["t_first"]
                n = state["n"]
                # On a line of its own: Faust's spinner writes to stdout without a newline.
                print("\n" + json.dumps({"client": "faust", "messages": n, "seconds": round(dt, 3),
                                  "msgs_per_s": round(n / dt) if dt else None,
                                  "avg_batch": round(n / state["batches"]),
                                  "avg_bytes": round(state["nbytes"] / max(n, 1), 1),
                                  "complete": n >= expected}), flush=True)
                logging.shutdown()
                os._exit(0)  # a bench child: no graceful Faust shutdown needed

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
