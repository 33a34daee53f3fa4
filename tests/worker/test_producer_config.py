"""The transactional producer's configuration: what the engine's timing
depends on (measured with bench.ab; bench/profile_notes.md, 2026-12-07)."""

from __future__ import annotations

from compstream.worker.engines.kafka_sides import producer_config

LIBRDKAFKA_RETRY_BACKOFF_MS_DEFAULT = 100


def test_a_transaction_begun_right_after_a_commit_retries_soon():
    # With one commit in flight, each transaction begins as the last one
    # commits and meets CONCURRENT_TRANSACTIONS; at librdkafka's default
    # backoff every checkpoint waited ~100 ms (p99 at 1k ev/s x1.8).
    config = producer_config("localhost:9092", "t")
    assert config["retry.backoff.ms"] <= 20 < LIBRDKAFKA_RETRY_BACKOFF_MS_DEFAULT
    assert config["enable.idempotence"] is True and config["acks"] == "all"
