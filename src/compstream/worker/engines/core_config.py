"""The checkpoint core's configuration from the deployment's settings: one
place for both engines."""

from __future__ import annotations

from compstream.config import Settings
from compstream.worker.core.checkpoint import CoreConfig


def core_config(settings: Settings) -> CoreConfig:
    lb_config = pseudonyms = None
    if settings.leaderboards_enabled:
        from compstream.worker.leaderboards.settings import leaderboard_config, pseudonymizer

        lb_config, pseudonyms = leaderboard_config(settings), pseudonymizer(settings)
    return CoreConfig(settings.topics, settings.worker_id, settings.source_partitions, settings.lateness_s,
                      settings.book_bytes_max, lb_config, pseudonyms, usage_ahead_s_max=settings.usage_ahead_s_max,
                      book_cache_books_max=settings.book_cache_books_max,
                      book_cache_bytes_max=settings.book_cache_bytes_max)
