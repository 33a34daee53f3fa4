"""Run the worker (the engine of the settings) in this process until SIGTERM/SIGINT.

Writes `<data dir>/worker.pid` while running, so `compstream rebuild` and
operators can find (and stop) the worker of a data dir.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

from compstream.config import Settings


def pid_path(settings: Settings) -> Path:
    return settings.data_dir / "worker.pid"


def running_pid(settings: Settings) -> int | None:
    """The pid of this data dir's live worker, or None."""
    try:
        pid = int(pid_path(settings).read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


# Every batch keeps ~10,000 books and their events alive for a while; with
# CPython's default thresholds (700, 10, 10) those survivors trigger frequent
# full collections over the whole heap: ~9.7 s of a 45 s run at 10,000
# engineers. Rarer young collections promote far fewer short-lived objects;
# full collections still run (CPython's 25 % rule), so cyclic garbage is
# still reclaimed. Measured: bench/profile_notes.md. LedgerCore.step also
# holds the collector off while a batch runs (worker/core/collector.py).
GC_THRESHOLDS = (50_000, 10, 10)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()  # imports and app wiring live as long as the process: stop scanning them
    gc.set_threshold(*GC_THRESHOLDS)


def run_worker(settings: Settings, loglevel: str = "WARNING") -> None:
    from compstream.worker.recorded_late import RecordedLateError

    try:
        _run_worker(settings, loglevel)
    except RecordedLateError as exc:  # a rebuild's decisions it cannot take: say why, no traceback
        raise SystemExit(f"compstream worker: {exc}") from exc


def _run_worker(settings: Settings, loglevel: str) -> None:
    other = running_pid(settings)
    if other is not None and other != os.getpid():
        raise SystemExit(f"a worker (pid {other}) already runs on {settings.data_dir}")
    if settings.engine == "transactional":
        from compstream.worker.engines import transactional

        logging.basicConfig(level=loglevel, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
        logging.getLogger("compstream").setLevel(loglevel)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        pid_path(settings).write_text(f"{os.getpid()}\n")
        tune_gc()
        try:
            transactional.run(settings)
        finally:
            if running_pid(settings) == os.getpid():
                pid_path(settings).unlink(missing_ok=True)
        return
    _run_faust(settings, loglevel)


def _run_faust(settings: Settings, loglevel: str) -> None:
    import faust

    from compstream.worker.engines.faust.app import create_app
    from compstream.worker.engines.topics import ensure_engine_topics

    ensure_engine_topics(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Named levels, not just the handler's: aiokafka and Faust log at debug
    # per message, and with only the handler filtering, building those records
    # cost ~9 % of the worker's main thread (py-spy, bench/profile_notes.md).
    # Set before the app: its history loader process takes the level at start.
    for name in ("compstream", "faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(name).setLevel(loglevel)
    app, engine = create_app(settings)
    pid_path(settings).write_text(f"{os.getpid()}\n")
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    tune_gc()
    try:
        worker.execute_from_commandline()  # returns/exits on signal
    finally:
        engine.close()
        if running_pid(settings) == os.getpid():
            pid_path(settings).unlink(missing_ok=True)
