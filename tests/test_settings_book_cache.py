"""The live-book cache's bounds (COMPSTREAM_BOOK_CACHE_BOOKS_MAX / _BYTES_MAX)
reach the processor of the core both engines build, and its hits and misses
reach /metrics."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from compstream.config import BOOK_CACHE_BOOKS_MAX, BOOK_CACHE_BYTES_MAX, Settings
from compstream.worker.book_cache import BookCache
from compstream.worker.core.checkpoint import LedgerCore
from compstream.worker.engines.core_config import core_config
from compstream.worker.metrics import WorkerMetrics


def _cache(monkeypatch, **env):
    monkeypatch.setenv("COMPSTREAM_LEADERBOARDS", "off")
    for name in ("COMPSTREAM_BOOK_CACHE_BOOKS_MAX", "COMPSTREAM_BOOK_CACHE_BYTES_MAX"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return LedgerCore(core_config(Settings.from_env())).processor.book_cache


def test_defaults_and_overrides_reach_the_processors_cache(monkeypatch):
    cache = _cache(monkeypatch)
    assert (cache.max_entries, cache.bytes_max) == (BOOK_CACHE_BOOKS_MAX, BOOK_CACHE_BYTES_MAX)
    cache = _cache(monkeypatch, COMPSTREAM_BOOK_CACHE_BOOKS_MAX="50000",
                   COMPSTREAM_BOOK_CACHE_BYTES_MAX=str(256 * 1024 * 1024))
    assert (cache.max_entries, cache.bytes_max) == (50_000, 256 * 1024 * 1024)
    off = _cache(monkeypatch, COMPSTREAM_BOOK_CACHE_BOOKS_MAX="0")
    off.put("alice", b"x", object())  # type: ignore[arg-type]
    assert len(off) == 0


@pytest.mark.parametrize("name, raw, message", [
    ("COMPSTREAM_BOOK_CACHE_BOOKS_MAX", "-1", "must be >= 0"),
    ("COMPSTREAM_BOOK_CACHE_BYTES_MAX", "32MiB", "must be a whole number"),
])
def test_a_bad_bound_is_refused_with_its_name(monkeypatch, name, raw, message):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError, match=f"{name} {message}"):
        Settings.from_env()


def _samples(metrics: WorkerMetrics) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples}


def test_hits_and_misses_count_on_across_a_new_cache():
    metrics = WorkerMetrics("transactional")
    cache = BookCache()
    cache.hits, cache.misses = 7, 3
    metrics.book_cache_state(cache)
    cache.hits, cache.misses = 12, 4
    metrics.book_cache_state(cache)
    # An abort rebuilds the core: a new cache, counting from zero again.
    new = BookCache()
    new.put("alice", b"12345", object())  # type: ignore[arg-type]
    new.hits, new.misses = 2, 5
    metrics.book_cache_state(new)
    got = _samples(metrics)
    assert got[("compstream_book_cache_total", (("result", "hit"),))] == 14
    assert got[("compstream_book_cache_total", (("result", "miss"),))] == 9
    assert got[("compstream_book_cache_books", ())] == 1
    assert got[("compstream_book_cache_bytes", ())] == 5
