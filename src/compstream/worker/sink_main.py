"""`compstream sink` as a process: one HistoryLoader until SIGTERM/SIGINT.

Sinks on the same group split the history partitions (a ClickHouse server
store; the embedded chdb store opens in one process only)."""

from __future__ import annotations

import logging
import signal

from compstream.config import Settings
from compstream.worker.core.checkpoint import history_topic


def run_sink(settings: Settings, group: str | None, loglevel: str) -> None:
    from compstream.history import open_history
    from compstream.worker.engines.topics import ensure_engine_topics
    from compstream.worker.faults import Faults
    from compstream.worker.history_loader import HistoryLoader

    logging.basicConfig(level=loglevel, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    ensure_engine_topics(settings)
    store = open_history(settings.clickhouse_dsn)
    store.migrate()
    loader = HistoryLoader(settings.kafka_bootstrap, history_topic(settings.topics),
                           group or f"{settings.worker_id}-history-sink", store,
                           Faults(),  # inert unless COMPSTREAM_FAULT_* is set (the reliability tests)
                           shared=True, session_timeout_s=settings.session_timeout_s)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loader.stop_event.set())
    try:
        loader.run()
    finally:
        loader.consumer.close()
        store.close()
