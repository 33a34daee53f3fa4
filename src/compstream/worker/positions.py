"""Our own record of where each source topic-partition has been processed up to.

Faust's commits are not enough: when flow control is paused (start-up,
rebalance) it skips the messages already in its queues *and acks them*, so a
later commit can move past messages no agent ever saw. The worker therefore
keeps, per source topic-partition, the next offset it must process, stored in
the books table right after the books of the same batch (same changelog
partition, so restored together), and screens every batch against it:
- an offset below it was already applied: dropped (books would ignore it anyway);
- an offset above it is a gap: the consumer is sent back to the expected
  offset and that topic-partition's messages wait for the re-read. Only a gap
  that every re-read shows identically (GAP_READS_TO_ACCEPT reads) is taken
  as real (e.g. transaction markers, retention) and accepted.
"""

from __future__ import annotations

import logging
from typing import Callable, Hashable, Iterable, TypeVar

from compstream.worker.messages import SourceMessage

log = logging.getLogger(__name__)

# Books are keyed by engineer_id; position records use a prefix no engineer id
# has (event validation rejects control characters in ids).
POSITION_KEY_PREFIX = "\x00position\x00"
# Reads (the first and the re-reads after seeks) that must show the very same
# gap before it is accepted. One re-read was not enough: Faust's fetch loop can
# set its read offset past our seek (it resumes after handing over the
# message that revealed the gap), and then the re-read skips the same range
# again. Accepting wrongly loses events; a real gap costs one more seek.
GAP_READS_TO_ACCEPT = 3


def position_key(topic: str, partition: int) -> str:
    return f"{POSITION_KEY_PREFIX}{topic}\x00{partition}"


def is_position_key(key: str) -> bool:
    return key.startswith(POSITION_KEY_PREFIX)


# A pseudo topic (no topic name starts with NUL): its position record per
# partition holds the partition's stream time (µs since the epoch), written
# with the books so a restarted worker knows "now" before its first usage.
STREAM_TIME_TOPIC = "\x00stream-time"


def stream_time_key(partition: int) -> str:
    return position_key(STREAM_TIME_TOPIC, partition)


class PositionRecordError(ValueError):
    """A changelog position record that does not hold a number >= 0."""


def parse_offset(key: str, value: bytes, where: str, what: str = "an offset") -> int:
    """A position record's value: a decimal number >= 0 (an offset; a stream
    time's record holds µs since the epoch), else a clear error naming the
    record (`where`: the changelog and its partition, or the coordinates)."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise PositionRecordError(f"{where}: position record {key!r} holds {bytes(value)[:40]!r}, not {what}; "
                                  "written by another program? (docs/runbook.md, rebuild)")
    return number


def stored_positions(records: Iterable[tuple[bytes | None, bytes | None]], topics: Iterable[str],
                     partitions: int) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the next offset to process, as the books
    changelog's position records hold it (`records`: its (key, value) pairs
    in order; the last value of a key wins, a tombstone drops it)."""
    keys = {position_key(t, p).encode(): (t, p) for t in topics for p in range(partitions)}
    out: dict[tuple[str, int], int] = {}
    for key, value in records:
        if key is None:
            continue
        tp = keys.get(key)
        if tp is None:
            continue
        if value is None:
            out.pop(tp, None)
        else:
            out[tp] = parse_offset(key.decode("utf-8", "replace"), value, "books changelog")
    return out


class PositionGuard:
    def __init__(self, load: Callable[[str, int], int | None]):
        """`load(topic, partition)` -> the stored next offset, else the group's
        committed offset, else None (nothing known: accept what comes)."""
        self.load = load
        self.next: dict[tuple[str, int], int] = {}
        # key -> (expected, first offset seen, reads that showed this gap)
        self._sought: dict[tuple[str, int], tuple[int, int, int]] = {}
        self.gaps_sought = 0
        self.gaps_accepted = 0
        self.stale = 0

    def forget(self) -> None:
        """After a rebalance another worker may have moved a partition on."""
        self.next.clear()
        self._sought.clear()

    def expected(self, topic: str, partition: int, current: bool) -> int | None:
        """Next offset to process: in memory if `current` (no rebalance since
        this guard last screened), else the stored one."""
        if current and (topic, partition) in self.next:
            return self.next[(topic, partition)]
        return self.load(topic, partition)

    def screen(self, messages: list[SourceMessage]) -> tuple[list[SourceMessage], dict[tuple[str, int], int]]:
        """-> (messages to process in order, {(topic, partition): offset to seek to})."""
        keep, seeks = [], {}
        for m in messages:
            key = (m.topic, m.partition)
            if key in seeks:
                continue  # this partition is being re-read from an earlier offset
            expected = self.next.get(key)
            if expected is None:
                expected = self.load(m.topic, m.partition)
            if expected is not None and m.offset < expected:
                self.stale += 1
                continue
            if expected is not None and m.offset > expected:
                before = self._sought.get(key)
                reads = before[2] + 1 if before is not None and before[:2] == (expected, m.offset) else 1
                if reads >= GAP_READS_TO_ACCEPT:
                    self._sought.pop(key, None)
                    self.gaps_accepted += 1
                    log.warning("offsets %d-%d of %s[%d] do not exist (%d reads showed it); continuing at %d",
                                expected, m.offset - 1, m.topic, m.partition, reads, m.offset)
                else:
                    self._sought[key] = (expected, m.offset, reads)
                    seeks[key] = expected
                    self.gaps_sought += 1
                    log.warning("offsets %d-%d of %s[%d] were not delivered (skipped by the consumer, "
                                "or not data); re-reading (read %d of %d before accepting)",
                                expected, m.offset - 1, m.topic, m.partition, reads, GAP_READS_TO_ACCEPT)
                    continue
            keep.append(m)
            self.next[key] = m.offset + 1
        return keep, seeks


# A stall that persists after a seek is sought again, backing off: usually a
# rebalance made Faust skip the re-read messages once more; a real gap (a
# trailing transaction marker) costs one cheap seek per STALL_RETRY_MAX_S.
STALL_RETRY_FIRST_S = 5.0
STALL_RETRY_MAX_S = 60.0


# A partition's key as the caller names it: (topic, partition) or Faust's TP.
K = TypeVar("K", bound=Hashable)
# sought[key]: (expected, highwater, retry_at_s, interval_s, attempt)
Sought = tuple[int, int, float, float, int]


def stalled_seeks(expected: dict[K, int], highwater: dict[K, int | None], sought: dict[K, Sought],
                  now_s: float) -> dict[K, int]:
    """Partitions to send back to where we must process from, when nothing arrives.

    The position guard only notices a gap when a later message arrives. When the
    consumer skipped (and Faust committed) the *last* messages of a partition,
    nothing later ever arrives and the partition would stay stalled. So, while
    the agent is idle, every assigned partition whose expected next offset is
    below its high-water mark is sought back to it. A stall that is still
    there unchanged (same expected offset and high water) is sought again
    after STALL_RETRY_FIRST_S, then at doubling intervals up to
    STALL_RETRY_MAX_S: giving up would leave the tail unprocessed for good.

    expected, highwater: {key: offset}; highwater None = not known yet (skip).
    sought: {key: (expected, highwater, retry_at_s, interval_s, attempt)},
    kept by the caller (cleared on rebalance) and updated here.
    Returns {key: offset to seek to}.
    """
    seeks = {}
    for key, nxt in expected.items():
        hw = highwater.get(key)
        if hw is None or hw < 0 or nxt >= hw:
            sought.pop(key, None)
            continue
        interval_s, attempt = STALL_RETRY_FIRST_S, 1
        before = sought.get(key)
        if before is not None and before[:2] == (nxt, hw):
            if now_s < before[2]:
                continue
            interval_s, attempt = min(before[3] * 2, STALL_RETRY_MAX_S), before[4] + 1
        sought[key] = (nxt, hw, now_s + interval_s, interval_s, attempt)
        seeks[key] = nxt
    return seeks
