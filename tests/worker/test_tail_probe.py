"""A transaction's trailing control record is not a backlog: the tail probe
reads it with a plain consumer (real broker) and says it holds no data, while
a real record is found; the probe's bookkeeping is unit-tested with a fake."""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaProducer

from compstream.worker.engines.faust.tail_probe import TailProbe, tail_has_data


def _end(bootstrap, topic, partition):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tp = TopicPartition(topic, partition)
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


@pytest.mark.kafka
def test_a_trailing_commit_marker_holds_no_data_a_record_does(kafka_bootstrap, topics):
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{topics.prefix}",
                             enable_idempotence=True, acks="all")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for i in range(3):
            producer.send(topics.grants, key=b"k", value=b"v%d" % i, partition=0)
        producer.commit_transaction()
    finally:
        producer.close(timeout=30)
    end = _end(kafka_bootstrap, topics.grants, 0)
    assert end == 4  # 3 records + the commit marker
    assert tail_has_data(kafka_bootstrap, topics.grants, 0, 3, end) is False
    assert tail_has_data(kafka_bootstrap, topics.grants, 0, 2, end) is True


def test_probe_after_an_unchanged_range_and_only_for_that_range():
    answers = {("g", 0, 5, 6): False, ("g", 1, 5, 9): True}
    calls = []

    def has_data(topic, partition, start, end):
        calls.append((topic, partition, start, end))
        return answers[(topic, partition, start, end)]

    now = [0.0]
    probe = TailProbe(has_data, clock=lambda: now[0], after_s=5)

    async def run():
        assert not probe.empty(("g", 0), 5, 6) and not probe.empty(("g", 1), 5, 9)
        now[0] = 4.0
        assert not probe.empty(("g", 0), 5, 6)  # too soon: no probe
        await asyncio.sleep(0)
        assert calls == []
        now[0] = 5.0
        assert not probe.empty(("g", 0), 5, 6)  # starts the probe
        assert not probe.empty(("g", 1), 5, 9)  # one at a time
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert calls == [("g", 0, 5, 6)]
        assert probe.empty(("g", 0), 5, 6)
        assert not probe.empty(("g", 0), 5, 7)  # the partition moved: a backlog again
        assert not probe.empty(("g", 1), 5, 9)  # now its turn
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert calls[-1] == ("g", 1, 5, 9) and not probe.empty(("g", 1), 5, 9)  # data: still behind
        probe.forget()
        assert not probe.empty(("g", 0), 5, 6)  # forgotten on rebalance

    asyncio.run(run())


@pytest.mark.kafka
def test_grants_ending_in_a_commit_marker_do_not_hold_usage_back(kafka_bootstrap, topics, tmp_path):
    """HR publishes grants in a transaction: every grants partition ends in a
    commit marker. Usage must still become final (watermark = latest usage -
    lateness), not stay held at the last grant for as long as usage flows."""
    import time
    from datetime import timedelta

    from compstream.domain.events import Usage
    from compstream.publish import publish_events
    from compstream.readback import latest_balances
    from compstream.synth import generate
    from support.checks import expected_counts, wait_balances
    from support.faults import ledger_only
    from support.worker import WorkerProcess
    from worker.test_real_gaps import _publish_in_transactions

    events = ledger_only(generate(engineers=16, usage_events=400, seed=95))
    grants = [e for e in events if e.type != "usage"]
    usage = [e for e in events if e.type == "usage"]
    _publish_in_transactions(grants, kafka_bootstrap, topics)
    # The Faust engine's tail probe (the transactional engine waits for the grants partition's end).
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=f"g-{topics.prefix}",
                           lateness_s=3600, partitions=4, extra_env={"COMPSTREAM_ENGINE": "faust"}).start()
    try:
        publish_events(usage, kafka_bootstrap, topics)
        wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 120, worker)
        engineers = sorted({e.engineer_id for e in events})
        at = max(u.occurred_at for u in usage)
        floor = at - timedelta(hours=2)  # the watermark of every partition once released
        deadline, watermarks = time.monotonic() + 90, {}
        while time.monotonic() < deadline:  # usage keeps flowing, as it does in production
            at += timedelta(minutes=1)
            publish_events([Usage(f"tick-{e}-{at:%H%M}", e, "openai", "gpt-4o", at, 1, 1, 0, 0, 1)
                            for e in engineers], kafka_bootstrap, topics)
            balances = latest_balances(kafka_bootstrap, topics.balances, timeout_s=1)
            watermarks = {e: balances.get(e, {}).get("watermark") for e in engineers}
            if all(w is not None and w >= floor for w in watermarks.values()):
                break
            assert worker.alive(), worker.diagnosis()
            time.sleep(1)
        held = {e: w for e, w in watermarks.items() if w is None or w < floor}
        assert held == {}, f"watermarks held back below {floor}: {held}\n{worker.diagnosis()}"
        assert "hold no data (transaction markers)" in worker.log_path.read_text(errors="replace")
    finally:
        assert worker.stop() == 0, worker.log_tail()
