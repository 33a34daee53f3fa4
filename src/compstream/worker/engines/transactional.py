"""The transactional engine: the checkpoint loop on confluent-kafka.

Per batch one Kafka transaction holds the changelog records of the touched
books, balances, alerts, dead letters, the history rows (history topic) and
the consumed source offsets. Books live in memory and are restored from the
changelog when partitions are assigned. History reaches the store through
the history topic: loaded in-process (COMPSTREAM_HISTORY_SINK=embedded, the
default) or by `compstream sink` (external).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException

from compstream.config import Settings
from compstream.worker.core.checkpoint import LedgerCore
from compstream.worker.core.loop import CheckpointLoop
from compstream.worker.engines.core_config import core_config
from compstream.worker.engines.history_side import EmbeddedHistory, instance_id
from compstream.worker.engines.kafka_sides import KafkaInput, KafkaOutput, TransactionCommitter
from compstream.worker.engines.serving import serve
from compstream.worker.engines.topics import ensure_engine_topics
from compstream.worker.faults import Faults
from compstream.worker.metrics import WorkerMetrics

if TYPE_CHECKING:
    from compstream.worker.core.ports import Checkpoint
    from compstream.worker.engines.history_side import LoaderChild

log = logging.getLogger(__name__)

FENCED_EXIT_CODE = 75  # EX_TEMPFAIL: a supervisor restarts it as a fresh member
LOG_EVERY_S = 5.0


def _observe(metrics: WorkerMetrics, loop: CheckpointLoop, checkpoint: Checkpoint, seconds: float) -> None:
    metrics.checkpoint(checkpoint.stats, seconds, loop.inputs.buffered())
    metrics.book_cache_state(loop.core.processor.book_cache)
    metrics.restore_seconds.set(loop.restore_s_last)


def _observe_positions(metrics: WorkerMetrics, loop: CheckpointLoop, source: KafkaInput,
                       loader: LoaderChild | None) -> None:
    processor = loop.core.processor
    metrics.restore_records.inc(loop.restore_records_total - metrics.restore_records_seen)
    metrics.restore_records_seen = loop.restore_records_total
    for p in sorted(loop.core.owned):
        stream = processor.stream_time.get(p)
        metrics.partition_times(p, stream, processor.watermark(p) if stream is not None else None)
    for (topic, p), lag in source.lag(loop.assigned, loop.core.positions).items():
        metrics.lag.labels(topic, str(p)).set(lag)
    if loader is not None:
        metrics.history_progress(loader.lag(), loader.loaded_records)


def run(settings: Settings) -> None:
    config = core_config(settings)  # first: a rebuild's decisions it cannot take stop it before the broker
    ensure_engine_topics(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    faults = Faults()
    topics = settings.topics
    inputs: tuple[str, ...] = (topics.usage, topics.grants)
    if config.leaderboards is not None:
        inputs += (topics.leaderboard_candidates,)
    source = KafkaInput(settings.kafka_bootstrap, settings.worker_id, inputs, settings.session_timeout_s)
    output = KafkaOutput(settings.kafka_bootstrap, f"{settings.worker_id}-{instance_id(settings)}",
                         source.consumer, faults)
    # One commit in flight while the next batch is filled and stepped (core/loop.py).
    committer = TransactionCommitter(output)
    loop = CheckpointLoop(lambda: LedgerCore(config), source, output, idle_s=settings.task_idle_s,
                          batch_events_max=settings.batch_events_max, idle_advance_s=settings.idle_advance_s,
                          wall_clock=lambda: datetime.now(timezone.utc), committer=committer)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    history = EmbeddedHistory(settings)
    loader = history.loader
    metrics = WorkerMetrics("transactional")
    web = serve(settings, lambda: loop.core, metrics)
    log.info("transactional engine ready (group %s)", settings.worker_id)
    applied = batches = 0
    last_log = time.monotonic()
    code = 0
    try:
        while not stop.is_set():
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
                _observe(metrics, loop, checkpoint, loop.batch_s_last)
            if time.monotonic() - last_log >= LOG_EVERY_S:
                last_log = time.monotonic()
                _observe_positions(metrics, loop, source, loader)
                log.info("%d batches, %d events applied, %d commits, %d aborts, %d buffered",
                         batches, applied, loop.commits, loop.aborts, loop.inputs.buffered())
        last = loop.finish()  # the commit still in flight
        if last is not None:
            _observe(metrics, loop, last, loop.batch_s_last)
    except KafkaException as exc:
        log.error("fatal Kafka error (%s): exiting with %d for a restart", exc, FENCED_EXIT_CODE)
        code = FENCED_EXIT_CODE
    finally:
        committer.shutdown(wait=True)  # (after an error: the commit in flight ends before the producer closes)
        web.shutdown()
        history.stop()
        try:
            source.close()
        except KafkaException as exc:  # fenced or disconnected: still release the rest
            log.warning("consumer close: %s", exc)
        finally:
            output.close()
    if code:
        logging.shutdown()
        os._exit(code)
