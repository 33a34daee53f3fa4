"""Offsets no consumer ever sees (transaction markers) are real gaps: the
worker re-reads to be sure, then accepts them, and counts every event once.
Real broker, real transactional producer, real worker."""

from __future__ import annotations

import pytest
from kafka import KafkaProducer

from compstream.codec import encode_event
from compstream.publish import publish_events, topic_for
from compstream.synth import generate
from compstream.worker.positions import GAP_READS_TO_ACCEPT
from support.checks import balance_mismatches, expected_counts, wait_balances
from support.faults import ledger_only, worker_for

pytestmark = pytest.mark.kafka
PARTITIONS = 4
TRANSACTIONS = 3


def _publish_in_transactions(events, bootstrap, topics) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{topics.prefix}",
                             enable_idempotence=True, acks="all")
    try:
        producer.init_transactions()
        size = -(-len(events) // TRANSACTIONS)
        for i in range(0, len(events), size):
            producer.begin_transaction()
            for event in events[i:i + size]:
                producer.send(topic_for(event, topics), key=event.engineer_id.encode(), value=encode_event(event))
            producer.commit_transaction()  # writes a control record (an offset) per partition
    finally:
        producer.close(timeout=30)


def test_transaction_markers_are_accepted_gaps_and_nothing_is_lost(kafka_bootstrap, topics, tmp_path):
    events = ledger_only(generate(engineers=16, usage_events=400, seed=95))
    half = len(events) // 2
    _publish_in_transactions(events[:half], kafka_bootstrap, topics)
    publish_events(events[half:], kafka_bootstrap, topics)  # after the markers: gaps mid-log
    # The Faust engine's position guard (the transactional engine reads its committed offsets).
    worker = worker_for(tmp_path, kafka_bootstrap, topics, "gaps", PARTITIONS, COMPSTREAM_ENGINE="faust").start()
    try:
        balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 120, worker)
        assert balance_mismatches(balances, events) == []
        log = worker.log_path.read_text(errors="replace")
        assert f"do not exist ({GAP_READS_TO_ACCEPT} reads showed it)" in log, worker.diagnosis()
    finally:
        assert worker.stop() == 0, worker.log_tail()
