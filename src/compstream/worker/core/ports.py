"""The two sides every engine implements, and what passes between them.

InputSide: fetched source messages and end-of-partition signals, assignment
changes, committed positions and the changelog to restore books from.
OutputSide: one checkpoint -- every output record and the consumed offsets --
made visible atomically, or not at all (CommitFailed). The transactional
engine maps a checkpoint onto one Kafka transaction; memory.py onto lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

from compstream.domain.twin import fast_constructor
from compstream.worker.messages import EndOfInput, SourceMessage

TopicPartition = tuple[str, int]


class CommitFailed(RuntimeError):
    """Nothing of the checkpoint is visible; the engine must restore its state
    from the changelog and re-read from the committed offsets."""


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone
    partition: int | None = None  # None: the key's murmur2 partition


# OutRecord(topic, key, value, partition) without the frozen __init__: the
# core builds about two per event (a changelog record and a balance per book).
new_out_record = fast_constructor(OutRecord)


@dataclass(frozen=True, slots=True)
class Assigned:
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class Revoked:
    partitions: tuple[TopicPartition, ...]


Polled = SourceMessage | EndOfInput | Assigned | Revoked


@dataclass
class BatchStats:
    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    swept: int = 0
    stale: int = 0  # below the committed position: already in an earlier checkpoint
    history_rows: int = 0
    # Book records (books, heads, segments) written to the books changelog,
    # and their bytes: what a batch costs the changelog (worker/book_changelog.py).
    book_records: int = 0
    book_bytes: int = 0
    applied_by_type: dict[str, int] = field(default_factory=dict)


@dataclass
class Checkpoint:
    records: list[OutRecord]
    offsets: dict[TopicPartition, int]  # next offset to consume, per source topic-partition
    stats: BatchStats = field(default_factory=BatchStats)
    # The batch's cut records (core/cut.py): written first by an engine that
    # writes in waves, never by one that commits atomically.
    cuts: list[OutRecord] = field(default_factory=list)
    # What the batch refused for its books' state (core/cut.py): written by
    # such an engine at the head of its state wave, never by the other.
    refusals: list[OutRecord] = field(default_factory=list)


class InputSide(Protocol):
    def poll(self, max_messages: int, timeout_s: float) -> list[Polled]: ...

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The committed next offset per partition (absent: none committed)."""

    def changelog(self, topic: str, partition: int) -> Iterable[tuple[bytes, bytes | None]]:
        """Every committed (key, value) of a changelog partition, in order."""

    def backlog(self, partitions: Iterable[TopicPartition],
                below: dict[TopicPartition, int] | None = None) -> set[TopicPartition]:
        """Those of `partitions` known to hold records not yet returned by poll
        (with `below`: records before a partition's offset there, where it has one)."""

    def ends(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's end offset as last known (those not known yet left out)."""

    def seek(self, offsets: dict[TopicPartition, int | None]) -> None:
        """Fetch from these offsets next (None: the partition's beginning);
        anything fetched and not yet returned is dropped."""

    def pause(self, partitions: Iterable[TopicPartition]) -> None: ...

    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...


class OutputSide(Protocol):
    def commit(self, checkpoint: Checkpoint) -> None:
        """All records and offsets, atomically; raises CommitFailed otherwise."""
