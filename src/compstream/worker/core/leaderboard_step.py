"""Leaderboards inside the checkpoint: the partition stage fed with the
messages the ledger applied, and the merge fed with the candidates topic,
all of it in the same checkpoint as the ledger's outputs.

    ledger-applied source messages -> PartitionStage -> candidates topic
       + its records (leaderboard-partitions changelog, source partition)
    candidates topic (1 partition, read_committed) -> MergeStage
       -> leaderboards topic (compacted), its records (merge changelog),
          closed windows (history topic, leaderboard_windows)
The merge's position (the candidates offset) is a record of the merge
changelog, written by LedgerCore with the checkpoint's other positions.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from compstream.config import Topics
from compstream.domain.events import Event
from compstream.domain.leaderboard import CandidateMessage, LeaderboardConfig, Pseudonymizer, WatermarkMessage
from compstream.history.rows import HistoryBatch
from compstream.history.wire import encode_records
from compstream.worker.core.ports import OutRecord
from compstream.worker.leaderboards.merge import MergeStage
from compstream.worker.leaderboards.partition import PartitionStage, dumps
from compstream.worker.messages import Coord, SourceMessage

MERGE_PARTITION = 0
MERGE_POSITION_KEY = "p|position"  # merge records are w|, c|, m|: no clash


def partition_changelog(worker_id: str) -> str:
    return f"{worker_id}-leaderboard-partitions-changelog"


def merge_changelog(worker_id: str) -> str:
    return f"{worker_id}-leaderboard-merge-changelog"


def _latest(records: Iterable[tuple[bytes, bytes | None]]) -> list[tuple[str, bytes]]:
    last: dict[str, bytes | None] = {}
    for key, value in records:
        last[key.decode("utf-8")] = value
    return [(k, v) for k, v in last.items() if v is not None]


class LeaderboardStep:
    def __init__(self, config: LeaderboardConfig, topics: Topics, worker_id: str, partitions: int,
                 history_topic: str, pseudonymizer: Pseudonymizer | None = None,
                 clock_us: Callable[[], int] = lambda: time.time_ns() // 1000):
        self.topics = topics
        self.stage = PartitionStage(config, {topics.usage: "usage", topics.grants: "grants"})
        self.merge = MergeStage(config, partitions, pseudonymizer)
        self.partition_changelog = partition_changelog(worker_id)
        self.merge_changelog = merge_changelog(worker_id)
        self.history_topic = history_topic
        # Wall-clock versions order a partition's candidates at the merge; a
        # stale owner cannot commit after a rebalance (its transaction is
        # fenced), so the clock of the committing owner is the only one.
        self.clock_us = clock_us
        self.resend: list[OutRecord] = []  # restored windows, sent with the next checkpoint

    # -- assignment ---------------------------------------------------------

    def restore_partition(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        messages = self.stage.restore(partition, _latest(records), self.clock_us())
        self.resend += [self._candidate(partition, m) for m in messages]

    def forget_partition(self, partition: int) -> None:
        self.stage.states.pop(partition, None)
        self.stage.next_offsets.pop(partition, None)
        self.stage.stream_time.pop(partition, None)

    def restore_merge(self, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        self.merge.restore([(k, v) for k, v in _latest(records) if k != MERGE_POSITION_KEY])

    def forget_merge(self) -> None:
        self.merge.forget()

    # -- the batch ----------------------------------------------------------

    def _candidate(self, partition: int, message: CandidateMessage | WatermarkMessage) -> OutRecord:
        return OutRecord(self.topics.leaderboard_candidates, str(partition).encode(), dumps(message.to_dict()),
                         MERGE_PARTITION)

    def step(self, counted: list[SourceMessage], decoded: dict[Coord, Event],
             candidates: list[SourceMessage]) -> list[OutRecord]:
        """`counted`: the batch's messages the ledger applied; `candidates`:
        messages of the candidates topic (empty unless this worker owns it)."""
        records, self.resend = self.resend, []
        if counted:
            out = self.stage.process(counted, self.clock_us(), decoded)
            records += [self._candidate(m.partition, m) for m in out.messages]
            records += [OutRecord(self.partition_changelog, key.encode(), value, p)
                        for p, items in out.records.items() for key, value in items.items()]
        if candidates:
            if not self.merge.loaded():
                raise RuntimeError("candidates to merge before the merge state was restored")
            merged = self.merge.process([m.value for m in candidates])
            records += [OutRecord(self.topics.leaderboards, key, value, MERGE_PARTITION)
                        for key, value in merged.publish]
            records += [OutRecord(self.merge_changelog, key.encode(), value, MERGE_PARTITION)
                        for key, value in merged.records.items()]
            rows = tuple(row for _token, batch_rows in merged.history for row in batch_rows)
            if rows:
                records += [OutRecord(self.history_topic, b"leaderboards", data, MERGE_PARTITION)
                            for data in encode_records(HistoryBatch(leaderboard_windows=rows))]
        return records
