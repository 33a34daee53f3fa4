"""What `compstream rebuild` spends keeping the stream's decisions
(worker/recorded_late.py) for a history of N events, in-process: the bench
dataset through the checkpoint core (LedgerCore, as bench_core_step runs it),
its history records kept, then `collect` over them (the read of the history
topic itself not included), the file written and read back, with the
decisions and places kept and the peak memory of `collect` (tracemalloc, a
second pass).

    PYTHONPATH=src:. python -m bench.bench_recorded_late --events 1000000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

from bench.bench_core_step import LATENESS_S, backlog_core
from compstream.worker import recorded_late
from compstream.worker.run import tune_gc


def run(events_n: int, engineers: int, batch_size: int) -> dict:
    from bench.run import events_for

    events = events_for(events_n, engineers)
    core, msgs = backlog_core(events, "recbench")
    del events
    tune_gc()
    history = []
    for i in range(0, len(msgs), batch_size):
        checkpoint = core.step(msgs[i:i + batch_size])
        core.committed()
        history += [(f"{r.topic}[{r.partition}]", r.value) for r in checkpoint.records
                    if r.topic == core.history and r.value is not None]
    n = len(msgs)
    del msgs, core
    t0 = time.perf_counter()
    kept = recorded_late.collect(history, timedelta(seconds=LATENESS_S))
    collect_s = time.perf_counter() - t0
    tracemalloc.start()  # a second pass for the memory: tracemalloc slows allocation several times
    recorded_late.collect(history, timedelta(seconds=LATENESS_S))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if kept is None:
        return {"events": n, "kept": None}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        recorded_late.write(Path(tmp), kept, LATENESS_S)
        write_s = time.perf_counter() - t0
        size = recorded_late.path_of(Path(tmp)).stat().st_size
        t0 = time.perf_counter()
        back = recorded_late.read(Path(tmp), LATENESS_S)
        read_s = time.perf_counter() - t0
    if back != kept:
        raise RuntimeError("the file did not read back as written")
    return {"events": n, "history_records": len(history), "late_decisions": len(kept.late),
            "places": sum(len(v) for v in kept.expected.values()), "engineers_with_places": len(kept.expected),
            "collect_s": round(collect_s, 2), "collect_peak_mib": round(peak / 2**20, 1),
            "write_s": round(write_s, 2), "read_s": round(read_s, 2), "file_bytes": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--engineers", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=40_000)
    args = ap.parse_args()
    print(json.dumps(run(args.events, args.engineers, args.batch)))


if __name__ == "__main__":
    main()
