"""The checkpoint core's configuration from the deployment's settings: one
place for both engines."""

from __future__ import annotations

import logging

from compstream.config import Settings
from compstream.worker import recorded_late
from compstream.worker.core.checkpoint import CoreConfig

log = logging.getLogger(__name__)


def core_config(settings: Settings) -> CoreConfig:
    lb_config = pseudonyms = None
    if settings.leaderboards_enabled:
        from compstream.worker.leaderboards.settings import leaderboard_config, pseudonymizer

        lb_config, pseudonyms = leaderboard_config(settings), pseudonymizer(settings)
    recorded = recorded_late.read(settings.data_dir, settings.lateness_s)
    if recorded is not None:  # (the Faust engine logs it again once its logging is set up)
        log.info("%s", recorded_late.summary(recorded, settings.data_dir))
    def spent() -> None:
        taken = recorded_late.retire(settings.data_dir)
        log.info("committed past every source record the stream had judged: its decisions are all taken%s",
                 f" ({recorded_late.FILE_NAME} moved to {taken})" if taken else "")

    return CoreConfig(settings.topics, settings.worker_id, settings.source_partitions, settings.lateness_s,
                      settings.book_bytes_max, lb_config, pseudonyms, usage_ahead_s_max=settings.usage_ahead_s_max,
                      book_cache_books_max=settings.book_cache_books_max,
                      book_cache_bytes_max=settings.book_cache_bytes_max, recorded=recorded,
                      on_recorded_spent=spent if recorded is not None else None)
