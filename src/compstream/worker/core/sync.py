"""Event-time synchronization of the co-partitioned source inputs.

A task is one source partition number p: usage partition p and grants
partition p hold the same engineers. The engine hands every fetched message
and every end-of-partition signal to `TaskInputs`; `take` returns what may be
applied now, in the order it must be applied.

The rule (Kafka Streams' timestamp synchronization, specialised to our
inputs): stream time -- and so the watermark -- moves with usage only. HR
events never move it, and an HR event applied early waits in its book as
pending until stream time reaches its effective time, which is the same
result as applying it in event-time order (the ledger is order independent
within lateness). So a task:
  1. applies every buffered HR event first, in offset order (a grant dated
     next month never blocks the revocation behind it);
  2. applies usage only once the HR input is known to be at its end
     (an end-of-partition signal after its last buffered message), so no
     usage can move the watermark past an HR event that is already in the
     topic but not yet read -- the startup backlog case; an end signal
     counts only while the engine knows of no records past it
     (`mark_backlog`, from the partition's high watermark);
  3. stops waiting after `idle_s` without that signal (Kafka Streams'
     `max.task.idle.ms`): then the task goes on and the HR input counts as
     lagging, which holds the watermark back at its last event time
     (LedgerProcessor.watermark).
Buffers are bounded: `over_bound` tells the engine to pause fetching a
topic-partition until its buffer drains.

After a restore that found a batch to read again as it was cut (the core's
`replay`, core/cut.py), `take` gives exactly that batch once every message
of it is fetched, and nothing before; it gives up after REPLAY_WAIT_S_MAX
(logged: the range is gone from the topic) and batches as usual.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping, MutableMapping

from compstream.worker.core.cut import Cut
from compstream.worker.messages import EndOfInput, SourceMessage

log = logging.getLogger(__name__)

BUFFER_MESSAGES_MAX = 50_000  # per topic-partition; the engine pauses fetching past it
IDLE_S_DEFAULT = 5.0
REPLAY_WAIT_S_MAX = 300.0  # the re-read of a recorded cut; past it the range counts as gone


@dataclass
class _Input:
    queue: deque[SourceMessage] = field(default_factory=deque)
    at_end: bool = False  # end-of-partition seen after the last fetched message


class TaskInputs:
    def __init__(self, usage_topic: str, grants_topic: str, *, idle_s: float = IDLE_S_DEFAULT,
                 buffer_messages_max: int = BUFFER_MESSAGES_MAX):
        if idle_s < 0:
            raise ValueError("idle_s must be >= 0")
        if buffer_messages_max < 1:
            raise ValueError("buffer_messages_max must be >= 1")
        self.usage_topic = usage_topic
        self.grants_topic = grants_topic
        self.idle_s = idle_s
        self.buffer_messages_max = buffer_messages_max
        self._inputs: dict[tuple[str, int], _Input] = {}
        # partition -> monotonic time since which its usage waits for the HR input
        self._waiting_since: dict[int, float] = {}
        self.idle_expired: set[int] = set()  # partitions that went on without the HR input's end
        self._replay_since: float | None = None  # monotonic time since which a replay waits for its range

    def _input(self, topic: str, partition: int) -> _Input:
        if topic not in (self.usage_topic, self.grants_topic):
            raise ValueError(f"{topic!r} is not a source topic of this task set")
        key = (topic, partition)
        found = self._inputs.get(key)
        if found is None:
            found = self._inputs[key] = _Input()
        return found

    def add(self, item: SourceMessage | EndOfInput) -> None:
        inp = self._input(item.topic, item.partition)
        if isinstance(item, EndOfInput):
            inp.at_end = True  # buffered messages stay: the fetch side is at its end
            return
        inp.queue.append(item)
        inp.at_end = False

    def mark_backlog(self, topic: str, partition: int) -> None:
        """The engine knows of records past what it fetched (the partition's
        high watermark is ahead): an earlier end signal is stale."""
        self._input(topic, partition).at_end = False

    def over_bound(self, topic: str, partition: int, replay: Mapping[int, Cut] | None = None) -> bool:
        """`replay`: an input still fetching the range of a cut to read again
        is never paused (that batch may exceed the bound)."""
        queue = self._input(topic, partition).queue
        cut = replay.get(partition) if replay else None
        if cut is not None and topic in cut.ranges and not _holds(queue, cut.ranges[topic]):
            return False
        return len(queue) >= self.buffer_messages_max

    def buffered(self) -> int:
        return sum(len(i.queue) for i in self._inputs.values())

    def drop_partition(self, topic: str, partition: int) -> None:
        """Forget a revoked (or re-sought) topic-partition's buffer and end signal."""
        self._inputs.pop((topic, partition), None)
        self._waiting_since.pop(partition, None)
        self.idle_expired.discard(partition)

    def clear(self) -> None:
        self._inputs.clear()
        self._waiting_since.clear()
        self.idle_expired.clear()
        self._replay_since = None

    def at_rest(self, partition: int) -> bool:
        """Both inputs of the task read to their end, nothing buffered."""
        for topic in (self.usage_topic, self.grants_topic):
            inp = self._inputs.get((topic, partition))
            if inp is None or inp.queue or not inp.at_end:
                return False
        return True

    def lagging(self) -> set[tuple[str, int]]:
        """HR inputs whose end is not known: they hold their task's watermark back."""
        return {(self.grants_topic, p) for p in self.idle_expired
                if not self._input(self.grants_topic, p).at_end}

    def take(self, limit: int, now_s: float, replay: MutableMapping[int, Cut] | None = None) -> list[SourceMessage]:
        """Up to `limit` messages that may be applied now, in apply order.
        `replay` (the core's): while it holds cuts, only their batch, whole."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if replay:
            return self._take_replay(replay, now_s)
        self._replay_since = None
        out: list[SourceMessage] = []
        partitions = sorted({p for _, p in self._inputs})
        for p in partitions:
            hr = self._inputs.get((self.grants_topic, p))
            while hr is not None and hr.queue and len(out) < limit:
                out.append(hr.queue.popleft())
            usage = self._inputs.get((self.usage_topic, p))
            if usage is None or not usage.queue:
                self._waiting_since.pop(p, None)
                continue
            if hr is not None and hr.queue:  # limit reached inside the HR queue
                continue
            if not self._hr_settled(p, hr, now_s):
                continue
            while usage.queue and len(out) < limit:
                out.append(usage.queue.popleft())
        return out

    def _take_replay(self, replay: MutableMapping[int, Cut], now_s: float) -> list[SourceMessage]:
        """The recorded batch, in the order `take` gave it (per partition,
        its HR range, then its usage range), once all of it is fetched."""
        missing = [(t, p) for p, cut in replay.items() for t, r in cut.ranges.items()
                   if not _holds(self._input(t, p).queue, r)]
        if missing:
            since = self._replay_since = now_s if self._replay_since is None else self._replay_since
            if now_s - since >= REPLAY_WAIT_S_MAX:
                log.error("the re-read of the last batch's cut did not get %s within %.0f s (gone from the "
                          "topic?): going on without it; verdicts on late events of that batch may differ "
                          "from the history rows it already wrote", sorted(missing), REPLAY_WAIT_S_MAX)
                replay.clear()
                self._replay_since = None
            return []
        self._replay_since = None
        out: list[SourceMessage] = []
        for p in sorted(replay):
            for topic in (self.grants_topic, self.usage_topic):
                _, end = replay[p].ranges.get(topic, (0, 0))
                queue = self._input(topic, p).queue
                while queue and queue[0].offset < end:
                    out.append(queue.popleft())
        return out

    def _hr_settled(self, p: int, hr: _Input | None, now_s: float) -> bool:
        if hr is not None and hr.at_end:
            self._waiting_since.pop(p, None)
            self.idle_expired.discard(p)
            return True
        if p in self.idle_expired:
            return True
        since = self._waiting_since.setdefault(p, now_s)
        if now_s - since >= self.idle_s:
            self.idle_expired.add(p)
            return True
        return False


def _holds(queue: deque[SourceMessage], offsets: tuple[int, int]) -> bool:
    """Whether `queue` (in offset order) holds the end of the range: its last
    message (offset end - 1; there may be gaps before it) or one past it."""
    start, end = offsets
    return end <= start or bool(queue) and queue[-1].offset >= end - 1
