"""The embedded history loader's own process (COMPSTREAM_HISTORY_SINK=embedded).

Run by the worker (engines/history_side.py) as

    python -m compstream.worker.history_child BOOTSTRAP TOPIC GROUP DSN LOGLEVEL

so that decoding ~1.4 KB of history JSON per event and building the store's
rows happens on another core and off the worker's GIL (one worker: 7.9k ev/s
with the loader as a thread, 12.2k without it, bench/profile_notes.md).

The parent talks over the child's standard streams:
- stdin: `drain` asks for a stop once what is committed is loaded (at most
  DRAIN_ON_STOP_S); end of file without `drain` means the parent died (kill -9,
  OOM): stop at once, so a restarted worker's child can open the store;
- stdout: a `PROGRESS lag loaded` line every PROGRESS_EVERY_S, for /metrics.
Logs go to stderr (the worker's log). SIGINT is ignored (a terminal's Ctrl-C
reaches the whole process group; the parent decides when the loader stops).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compstream.history.store import HistoryStore
    from compstream.worker.history_loader import HistoryLoader

DRAIN_ON_STOP_S = 10.0
# Below the worker: where the two compete for a core (a saturated worker on a
# small machine), balances -- what a gateway enforces -- come first and history
# lags, visibly (the lag gauge), catching up when the worker has slack.
# Measured: one worker, 500k events, 2 cores: 9,873 / 10,893 ev/s at nice 10
# against 6,693 / 7,258 at nice 0 (bench/profile_notes.md).
NICE = 10
PROGRESS_EVERY_S = 0.5
# chdb opens a data dir in one process at a time: a previous loader (of a
# worker that just died) may still be closing it.
OPEN_WAIT_S = 60.0

log = logging.getLogger("compstream.history_child")


def _open_store(dsn: str) -> HistoryStore:
    from compstream.history import open_history

    deadline = time.monotonic() + OPEN_WAIT_S
    while True:
        try:
            store = open_history(dsn)
            store.migrate()
            return store
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("history store %s not open yet (%s); retrying", dsn, exc)
            time.sleep(0.5)


def _watch_parent(loader: HistoryLoader, stop: threading.Event) -> None:
    draining = False
    for line in sys.stdin:
        if line.strip() == "drain":
            draining = True
            break
    if draining:
        deadline = time.monotonic() + DRAIN_ON_STOP_S
        while time.monotonic() < deadline and loader.lag() > 0:
            time.sleep(0.1)
    else:
        log.error("the worker is gone (stdin closed): stopping the history loader")
    stop.set()


def _report(loader: HistoryLoader, stop: threading.Event) -> None:
    while not stop.wait(PROGRESS_EVERY_S):
        try:
            sys.stdout.write(f"PROGRESS {loader.lag()} {loader.loaded_records}\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):  # the parent stopped reading: it is going away
            return


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: python -m compstream.worker.history_child BOOTSTRAP TOPIC GROUP DSN LOGLEVEL", file=sys.stderr)
        return 2
    bootstrap, topic, group, dsn, loglevel = argv
    logging.basicConfig(level=loglevel, stream=sys.stderr,
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):
        os.nice(NICE)
    from compstream.worker.faults import Faults
    from compstream.worker.history_loader import HistoryLoader

    store = _open_store(dsn)
    loader = HistoryLoader(bootstrap, topic, group, store, Faults())
    signal.signal(signal.SIGTERM, lambda *_: loader.stop_event.set())
    threading.Thread(target=_watch_parent, args=(loader, loader.stop_event), name="parent-watch",
                     daemon=True).start()
    threading.Thread(target=_report, args=(loader, loader.stop_event), name="progress", daemon=True).start()
    log.info("history loader process started (group %s, store %s)", group, dsn)
    try:
        loader.run()
    finally:
        loader.consumer.close()
        store.close()
    log.info("history loader process stopped after %d records", loader.loaded_records)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
