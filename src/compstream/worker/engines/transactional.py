"""The transactional engine: the checkpoint loop on confluent-kafka.

Per batch one Kafka transaction holds the changelog records of the touched
books, balances, alerts, dead letters, the history rows (history topic) and
the consumed source offsets. Books live in memory and are restored from the
changelog when partitions are assigned. History reaches the store through
the history topic: loaded in-process (COMPSTREAM_HISTORY_SINK=embedded, the
default) or by `compstream sink` (external).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from confluent_kafka import KafkaException

from compstream.config import Settings
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore, history_topic
from compstream.worker.balance_view import balance_body
from compstream.worker.core.loop import CheckpointLoop
from compstream.worker.engines.kafka_sides import KafkaInput, KafkaOutput
from compstream.worker.faults import Faults
from compstream.worker.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from compstream.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

FENCED_EXIT_CODE = 75  # EX_TEMPFAIL: a supervisor restarts it as a fresh member
LOG_EVERY_S = 5.0


def ensure_transactional_topics(settings: Settings) -> None:
    from compstream.broker.topics import FOREVER, TopicSpec, changelog_specs, ensure_specs, ensure_topics

    ensure_topics(settings.kafka_bootstrap, settings.topics, settings.source_partitions)
    specs = changelog_specs(settings.worker_id, settings.source_partitions)
    # Kept: a new store (or a wiped one) is loaded from it.
    specs[history_topic(settings.topics)] = TopicSpec(settings.source_partitions, dict(FOREVER))
    ensure_specs(settings.kafka_bootstrap, specs)


def instance_id(settings: Settings) -> str:
    """Stable per data dir: a restarted worker reuses its transactional id,
    which aborts whatever transaction its previous incarnation left open."""
    path = settings.data_dir / "worker-instance"
    if not path.exists():
        path.write_text(uuid.uuid4().hex[:12] + "\n")
    return path.read_text().strip()


def _web(settings: Settings, loop_ref: list[CheckpointLoop], metrics: WorkerMetrics) -> ThreadingHTTPServer:
    from compstream.domain.book import EngineerBook

    boards = _board_view(settings) if settings.leaderboards_enabled else None

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep request lines out of the worker log
            pass

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = [unquote(x) for x in self.path.split("?")[0].strip("/").split("/")]
            if parts == ["metrics"]:
                text = metrics.render()
                self.send_response(200)
                self.send_header("Content-Type", METRICS_CONTENT_TYPE)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)
                return None
            if len(parts) == 3 and parts[0] == "leaderboards" and boards is not None:
                status, body = boards(parts[1], parts[2], loop_ref[0].core.leaderboards)
                return self._json(status, body)
            if len(parts) != 2 or parts[0] != "balances":
                return self._json(404, {"error": "not found"})
            engineer = unquote(parts[1])
            core = loop_ref[0].core
            data = core.books.get(engineer)
            if data is None:
                return self._json(404, {"error": f"no balance for {engineer!r}"})
            from compstream.worker.messages import partition_of

            book = EngineerBook.from_bytes(data)
            partition = partition_of(engineer, settings.source_partitions)
            until = core.processor.stream_time.get(partition)
            final = core.processor.watermark(partition) if until is not None else book.watermark
            self._json(200, balance_body(book, until, final))

    server = ThreadingHTTPServer((settings.web_bind, settings.web_port), Handler)
    threading.Thread(target=server.serve_forever, name="web", daemon=True).start()
    return server


def _board_view(settings: Settings):
    """GET /leaderboards/{window}/{dimension}: from the merge state where this
    worker owns it, else from the leaderboards topic (as the Faust engine)."""
    from compstream.worker.leaderboards.merge import DIMENSIONS
    from compstream.worker.leaderboards.view import BadRequest, TopicBoards, resolve_window

    reader = TopicBoards(settings.kafka_bootstrap, settings.topics.leaderboards)
    lock = threading.Lock()

    def view(window: str, dimension: str, step) -> tuple[int, dict]:
        if dimension not in DIMENSIONS:
            return 400, {"error": f"unknown dimension {dimension!r}", "dimensions": sorted(DIMENSIONS)}
        scope, metric = DIMENSIONS[dimension]
        with lock:
            board, served_by = None, "leaderboards-topic"
            for _attempt in range(3):
                if step is not None and step.merge.loaded():
                    source, served_by = step.merge, "merge-state"
                else:
                    reader.refresh()
                    source, served_by = reader, "leaderboards-topic"
                try:
                    key = resolve_window(window, source.known_windows())
                    board = None if key is None else source.lookup(key, scope, metric)
                    break
                except BadRequest as exc:
                    return 400, {"error": str(exc)}
                except RuntimeError:  # the loop thread changed the merge state meanwhile: read again
                    continue
        if board is None:
            return 404, {"error": f"no {dimension} board for {window!r}", "served_by": served_by}
        return 200, {**board, "served_by": served_by}

    return view


def _observe(metrics: WorkerMetrics, loop: CheckpointLoop, checkpoint, seconds: float) -> None:
    st = checkpoint.stats
    metrics.transactions.labels("commit").inc()
    metrics.batch_events.observe(st.messages)
    metrics.batch_seconds.observe(seconds)
    for kind, n in st.applied_by_type.items():
        metrics.events.labels("applied", kind).inc(n)
    for outcome, n in (("duplicate", st.duplicates), ("dead_letter", st.dead_letters), ("stale", st.stale)):
        if n:
            metrics.events.labels(outcome, "any").inc(n)
    metrics.buffered.set(loop.inputs.buffered())
    metrics.restore_seconds.set(loop.restore_s_last)


def _observe_positions(metrics: WorkerMetrics, loop: CheckpointLoop, source: KafkaInput, loader) -> None:
    processor = loop.core.processor
    metrics.restore_records.inc(loop.restore_records_total - metrics.restore_records_seen)
    metrics.restore_records_seen = loop.restore_records_total
    for p in sorted(loop.core.owned):
        stream = processor.stream_time.get(p)
        metrics.partition_times(p, stream, processor.watermark(p) if stream is not None else None)
    for (topic, p), lag in source.lag(loop.assigned, loop.core.positions).items():
        metrics.lag.labels(topic, str(p)).set(lag)
    if loader is not None:
        metrics.history_lag.set(loader.lag())
        metrics.history_loaded.inc(loader.loaded_records - metrics.history_loaded_seen)
        metrics.history_loaded_seen = loader.loaded_records


def run(settings: Settings) -> None:
    ensure_transactional_topics(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    faults = Faults()
    topics = settings.topics
    lb_config = pseudonyms = None
    inputs: tuple[str, ...] = (topics.usage, topics.grants)
    if settings.leaderboards_enabled:
        from compstream.worker.leaderboards.settings import leaderboard_config, pseudonymizer

        lb_config, pseudonyms = leaderboard_config(settings), pseudonymizer(settings)
        inputs += (topics.leaderboard_candidates,)
    config = CoreConfig(topics, settings.worker_id, settings.source_partitions, settings.lateness_s,
                        settings.book_bytes_max, lb_config, pseudonyms)
    source = KafkaInput(settings.kafka_bootstrap, settings.worker_id, inputs, settings.session_timeout_s)
    output = KafkaOutput(settings.kafka_bootstrap, f"{settings.worker_id}-{instance_id(settings)}",
                         source.consumer, faults)
    loop = CheckpointLoop(lambda: LedgerCore(config), source, output, idle_s=settings.task_idle_s,
                          batch_events_max=settings.batch_events_max, idle_advance_s=settings.idle_advance_s,
                          wall_clock=lambda: datetime.now(timezone.utc))
    loop_ref = [loop]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    loader = store = loader_thread = None
    if settings.history_sink == "embedded":
        from compstream.history import open_history
        from compstream.worker.history_loader import HistoryLoader

        store = open_history(settings.clickhouse_dsn)
        store.migrate()
        loader = HistoryLoader(settings.kafka_bootstrap, history_topic(topics),
                               f"{settings.worker_id}-history-{instance_id(settings)}", store, faults)
        loader_thread = threading.Thread(target=loader.run, name="history-loader", daemon=True)
        loader_thread.start()
    metrics = WorkerMetrics("transactional")
    web = _web(settings, loop_ref, metrics)
    log.info("transactional engine ready (group %s)", settings.worker_id)
    applied = batches = 0
    last_log = time.monotonic()
    code = 0
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            aborts = loop.aborts
            checkpoint = loop.run_once()
            if loop.aborts != aborts:
                metrics.transactions.labels("abort").inc()
                metrics.restore_seconds.set(loop.restore_s_last)
            if checkpoint is not None:
                batches += 1
                applied += checkpoint.stats.applied
                st = checkpoint.stats
                log.info("batch of %d: %d applied, %d duplicates, %d dead letters, %d books swept, %d stale; "
                         "offsets %s", st.messages, st.applied, st.duplicates, st.dead_letters, st.swept, st.stale,
                         " ".join(f"{t.rsplit('.', 1)[-1]}:{p}={o}"
                                  for (t, p), o in sorted(checkpoint.offsets.items())))
                _observe(metrics, loop, checkpoint, time.monotonic() - t0)
            if time.monotonic() - last_log >= LOG_EVERY_S:
                last_log = time.monotonic()
                _observe_positions(metrics, loop, source, loader)
                log.info("%d batches, %d events applied, %d commits, %d aborts, %d buffered",
                         batches, applied, loop.commits, loop.aborts, loop.inputs.buffered())
    except KafkaException as exc:
        log.error("fatal Kafka error (%s): exiting with %d for a restart", exc, FENCED_EXIT_CODE)
        code = FENCED_EXIT_CODE
    finally:
        web.shutdown()
        if loader is not None:
            # Let the loader take what was committed before stopping it.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and loader.lag() > 0:
                time.sleep(0.1)
            loader.stop_event.set()
            if loader_thread is not None:
                loader_thread.join(timeout=30)
            loader.consumer.close()
        try:
            source.close()
        except KafkaException as exc:  # fenced or disconnected: still release the rest
            log.warning("consumer close: %s", exc)
        finally:
            output.close()
            if store is not None:
                store.close()
    if code:
        logging.shutdown()
        os._exit(code)
