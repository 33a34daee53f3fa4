"""The transactional engine's committer thread, on the real broker: a
checkpoint handed to `TransactionCommitter` commits its records and offsets
in one transaction, and the consumer's group metadata it commits under is
read on the loop's thread at hand-over -- the commit thread never calls the
consumer while the loop consumes."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
from confluent_kafka import Producer

from compstream.codec import encode_record
from compstream.readback import read_records
from compstream.worker.core.ports import Assigned, Checkpoint, OutRecord
from compstream.worker.engines.kafka_sides import KafkaInput, KafkaOutput, TransactionCommitter
from compstream.worker.messages import SourceMessage

pytestmark = pytest.mark.kafka
RECORDS = 4


class ThreadRecordingConsumer:
    """The real consumer; notes which thread asks for its group metadata."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.threads: list[int] = []

    def consumer_group_metadata(self):
        self.threads.append(threading.get_ident())
        return self.consumer.consumer_group_metadata()


def test_the_commit_thread_commits_under_the_metadata_read_at_hand_over(kafka_bootstrap, topics):
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for n in range(RECORDS):
        producer.produce(topics.grants, key=b"k", value=str(n).encode(), partition=0)
    assert producer.flush(30) == 0
    group = f"committer-{uuid.uuid4().hex[:8]}"
    source = KafkaInput(kafka_bootstrap, group, (topics.grants,), session_timeout_s=10)
    recording = ThreadRecordingConsumer(source.consumer)
    output = KafkaOutput(kafka_bootstrap, f"{group}-tx", recording)
    committer = TransactionCommitter(output)
    try:
        read: list[SourceMessage] = []
        assigned = False
        deadline = time.monotonic() + 60
        while len(read) < RECORDS and time.monotonic() < deadline:
            for item in source.poll(100, 0.2):
                assigned |= isinstance(item, Assigned)
                if isinstance(item, SourceMessage) and item.partition == 0:
                    read.append(item)
        assert assigned and len(read) == RECORDS
        marker = f"committed by {group}"
        letter = encode_record("DeadLetter", {
            "source_topic": topics.grants, "source_partition": 0, "source_offset": 0, "key": None, "raw": b"",
            "stage": "test", "reason": marker, "received_at": datetime(2026, 12, 7, tzinfo=timezone.utc)})
        checkpoint = Checkpoint(records=[OutRecord(topics.dead_letters, b"k", letter, 0)],
                                offsets={(topics.grants, 0): read[-1].offset + 1})
        with pytest.raises(TypeError):
            committer.submit(output.close)
        future = committer.submit(output.commit, checkpoint)
        assert recording.threads == [threading.get_ident()]  # read here, before the commit thread runs it
        assert future.result(60) is None
        assert recording.threads == [threading.get_ident()]  # and not again on the commit thread
        assert source.committed([(topics.grants, 0)]) == {(topics.grants, 0): read[-1].offset + 1}
        reasons = [r["reason"] for _, _, r in read_records(kafka_bootstrap, topics.dead_letters, timeout_s=5)]
        assert reasons == [marker]
    finally:
        committer.shutdown()
        source.close()
        output.close()
