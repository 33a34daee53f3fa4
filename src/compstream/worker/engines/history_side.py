"""History on the engine's side: with COMPSTREAM_HISTORY_SINK=embedded (the
default) a child process of the worker loads the history topic into the
worker's own store (worker/history_child.py, which runs history_loader.py);
with `external`, `compstream sink` does, and the worker only publishes the rows.

The loader is a process, not a thread, because it would otherwise share the
worker's GIL: measured, it took a third of one worker's throughput."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import uuid

from compstream.config import Settings
from compstream.worker.core.checkpoint import history_topic
from compstream.worker.history_child import DRAIN_ON_STOP_S

log = logging.getLogger(__name__)

RESTART_BACKOFF_S_MIN = 1.0
RESTART_BACKOFF_S_MAX = 30.0
STOP_WAIT_S = DRAIN_ON_STOP_S + 30.0  # the drain, then closing the consumer and the store


def instance_id(settings: Settings) -> str:
    """Stable per data dir: a restarted worker reuses its transactional id
    (which aborts whatever transaction its previous incarnation left open)
    and its loader's group."""
    path = settings.data_dir / "worker-instance"
    if not path.exists():
        path.write_text(uuid.uuid4().hex[:12] + "\n")
    return path.read_text().strip()


class LoaderChild:
    """The loader process, restarted with backoff whenever it dies while the
    worker runs (its offsets and the sink's high-water marks make a restart
    load every row once). `lag()` and `loaded_records` are its last report;
    `loaded_records` counts over every incarnation."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.stopping = threading.Event()
        self.restarts = 0
        self.loaded_records = 0
        self._loaded_before = 0  # by earlier incarnations
        self._lag = 1  # unknown until the first report: not caught up
        self.proc = self._spawn()
        self.watcher = threading.Thread(target=self._watch, name="history-child", daemon=True)
        self.watcher.start()

    def _spawn(self) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "compstream.worker.history_child", *self.argv],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=os.environ, text=True)

    def lag(self) -> int:
        return self._lag

    def _read_reports(self, proc: subprocess.Popen[str]) -> None:
        if proc.stdout is None:
            raise RuntimeError("the history loader process has no stdout pipe")
        for line in proc.stdout:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "PROGRESS":
                self._lag = int(parts[1])
                self.loaded_records = self._loaded_before + int(parts[2])

    def _watch(self) -> None:
        backoff_s = RESTART_BACKOFF_S_MIN
        while True:
            proc = self.proc
            self._read_reports(proc)  # until the child's stdout closes: it exited
            code = proc.wait()
            if self.stopping.is_set():
                return
            self.restarts += 1
            self._loaded_before = self.loaded_records
            self._lag = max(self._lag, 1)
            log.error("the history loader process exited with %s; restarting it in %.0f s (restart %d)",
                      code, backoff_s, self.restarts)
            if self.stopping.wait(backoff_s):
                return
            backoff_s = min(backoff_s * 2, RESTART_BACKOFF_S_MAX)
            self.proc = self._spawn()
            if self.stopping.is_set():  # stop() came while it spawned: it waited on the old one
                _drain_and_wait(self.proc)
                return

    def stop(self) -> None:
        """Let the loader take what was committed, then wait for it to close the store."""
        self.stopping.set()
        _drain_and_wait(self.proc)
        self.watcher.join(timeout=5)


def _drain_and_wait(proc: subprocess.Popen[str]) -> None:
    try:
        if proc.stdin is not None:
            proc.stdin.write("drain\n")
            proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # already gone
    try:
        proc.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        log.error("the history loader process did not stop in %.0f s: killing it", STOP_WAIT_S)
        proc.kill()
        proc.wait(timeout=10)


class EmbeddedHistory:
    """The loader process, or nothing (external sink)."""

    def __init__(self, settings: Settings):
        self.loader: LoaderChild | None = None
        if settings.history_sink != "embedded":
            return
        group = f"{settings.worker_id}-history-{instance_id(settings)}"
        loglevel = logging.getLevelName(logging.getLogger("compstream").getEffectiveLevel())  # --loglevel
        self.loader = LoaderChild([settings.kafka_bootstrap, history_topic(settings.topics), group,
                                   settings.clickhouse_dsn, loglevel])

    def stop(self) -> None:
        if self.loader is not None:
            self.loader.stop()
