"""Whether a source partition's unprocessed tail holds any data at all.

The ledger holds a partition's watermark back while one of its source topics
still has a backlog (expected offset < high water). A transactional producer
ends each transaction with a control record: an offset that no consumer ever
receives. Trailing one, it looks like a backlog that never drains, and the
watermark of every engineer on that partition would stay held back at that
topic's last event for as long as nothing else is written there: usage would
never become final, so no postings or budget alerts. So a tail that has looked
the same (same expected offset, same high water) for PROBE_AFTER_S is read
once by a plain consumer; if it holds no data record, it stops counting as a
backlog until the partition moves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

log = logging.getLogger(__name__)

PROBE_AFTER_S = 5.0  # a real backlog drains (or moves) well within this
PROBE_TIMEOUT_S = 10.0

Key = tuple[str, int]  # (topic, partition)


def tail_has_data(bootstrap: str, topic: str, partition: int, start: int, end: int,
                  timeout_s: float = PROBE_TIMEOUT_S) -> bool | None:
    """True if a data record sits in [start, end); False if none does (the
    consumer's position passed `end` without one); None if it could not tell
    in time. Blocking: run it on a thread."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=int(timeout_s * 1000) + 5000)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500, max_records=10).get(tp, []):
                if record.offset < end:
                    return True
            if consumer.position(tp) >= end:
                return False
        return None
    finally:
        consumer.close()


class TailProbe:
    """Per source partition: is its tail known to hold no data? Probes run
    on the executor, one at a time; results hold only while the partition's
    (expected, high water) stay exactly as probed."""

    def __init__(self, has_data: Callable[[str, int, int, int], bool | None],
                 clock: Callable[[], float] = time.monotonic,
                 after_s: float = PROBE_AFTER_S):
        self._has_data = has_data
        self._clock = clock
        self.after_s = after_s
        self._since: dict[Key, tuple[int, int, float]] = {}  # bounded by the assigned partitions
        self._empty: dict[Key, tuple[int, int]] = {}
        self._running: asyncio.Future[None] | None = None
        self.probes = 0

    def forget(self) -> None:
        """After a rebalance: the assignment and positions changed."""
        self._since.clear()
        self._empty.clear()

    def empty(self, key: Key, expected: int, highwater: int) -> bool:
        """True when [expected, highwater) is known to hold no data record.
        Otherwise False, and a probe starts once the same range has been seen
        for `after_s` (call it from the event loop)."""
        if self._empty.get(key) == (expected, highwater):
            return True
        now = self._clock()
        since = self._since.get(key)
        if since is None or since[:2] != (expected, highwater):
            self._since[key] = (expected, highwater, now)
            return False
        if now - since[2] >= self.after_s and self._running is None:
            self._running = asyncio.ensure_future(self._probe(key, expected, highwater))
        return False

    async def _probe(self, key: Key, expected: int, highwater: int) -> None:
        try:
            self.probes += 1
            found = await asyncio.get_running_loop().run_in_executor(
                None, self._has_data, key[0], key[1], expected, highwater)
            if found is False:
                self._empty[key] = (expected, highwater)
                log.info("%s[%d]: offsets %d-%d hold no data (transaction markers); not a backlog",
                         key[0], key[1], expected, highwater - 1)
            else:  # data, or no answer: look again after another after_s
                self._since[key] = (expected, highwater, self._clock())
        except Exception:  # a failed probe only leaves the partition counted as behind
            log.warning("probing %s[%d] failed", key[0], key[1], exc_info=True)
            self._since[key] = (expected, highwater, self._clock())
        finally:
            self._running = None
