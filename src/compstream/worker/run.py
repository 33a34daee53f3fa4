"""Run the Faust worker in this process until SIGTERM/SIGINT."""

from __future__ import annotations

import logging

from compstream.config import Settings


def run_worker(settings: Settings, loglevel: str = "WARNING") -> None:
    import faust

    from compstream.broker.topics import ensure_topics
    from compstream.worker.app import create_app

    ensure_topics(settings.kafka_bootstrap, settings.topics, settings.source_partitions)
    app = create_app(settings)
    logging.getLogger("compstream").setLevel(loglevel)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()  # returns/exits on signal
    finally:
        app.compstream["store"].close()
