"""History on the engine's side: with COMPSTREAM_HISTORY_SINK=embedded (the
default) a thread of the worker loads the history topic into the worker's own
store (history_loader.py); with `external`, `compstream sink` does, and the
worker only publishes the rows."""

from __future__ import annotations

import threading
import time
import uuid

from compstream.config import Settings
from compstream.worker.core.checkpoint import history_topic
from compstream.worker.faults import Faults

DRAIN_ON_STOP_S = 10.0


def instance_id(settings: Settings) -> str:
    """Stable per data dir: a restarted worker reuses its transactional id
    (which aborts whatever transaction its previous incarnation left open)
    and its loader's group."""
    path = settings.data_dir / "worker-instance"
    if not path.exists():
        path.write_text(uuid.uuid4().hex[:12] + "\n")
    return path.read_text().strip()


class EmbeddedHistory:
    """The loader thread and its store, or nothing (external sink)."""

    def __init__(self, settings: Settings, faults: Faults):
        self.loader = self.store = self.thread = None
        if settings.history_sink != "embedded":
            return
        from compstream.history import open_history
        from compstream.worker.history_loader import HistoryLoader

        self.store = open_history(settings.clickhouse_dsn)
        self.store.migrate()
        self.loader = HistoryLoader(settings.kafka_bootstrap, history_topic(settings.topics),
                                    f"{settings.worker_id}-history-{instance_id(settings)}", self.store, faults)
        self.thread = threading.Thread(target=self.loader.run, name="history-loader", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Let the loader take what was committed before stopping it."""
        if self.loader is None:
            return
        deadline = time.monotonic() + DRAIN_ON_STOP_S
        while time.monotonic() < deadline and self.loader.lag() > 0:
            time.sleep(0.1)
        self.loader.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=30)
        self.loader.consumer.close()
        if self.store is not None:
            self.store.close()
