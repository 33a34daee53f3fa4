"""Fault injection for the reliability tests, driven by environment variables.

Inert unless set. They sit exactly at the seams that matter for exactly-once:
- COMPSTREAM_FAULT_CRASH_AFTER_HISTORY=N  exit hard (os._exit) right after the
  Nth successful history write, before tables, outputs and offset commit;
- COMPSTREAM_FAULT_HISTORY_DOWN_FILE=PATH every history write fails while PATH
  exists (an embedded-engine stand-in for a ClickHouse outage);
- COMPSTREAM_FAULT_HOLD_BEFORE_COMMIT_FILE=PATH while PATH exists, a checkpoint
  whose outputs are produced waits before its commit (what a view shows then);
- COMPSTREAM_FAULT_DROP_BATCHES=N   ack the first N ledger batches unprocessed,
  as Faust does with messages it fetched before a rebalance pause;
- COMPSTREAM_FAULT_LOSE_STALL_SEEKS=N the first N stall seeks do not happen,
  as when a rebalance or an in-flight fetch undoes a seek;
- COMPSTREAM_FAULT_SKIP_AHEAD=N     once, in the first batch with usage, move
  the consumer's fetch position of one usage partition N records ahead without
  telling Faust, as when fetched records are dropped around a rebalance (Faust
  records a gap; the position guard re-reads the records).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, cast

if TYPE_CHECKING:
    import faust
    from faust.transport.consumer import ThreadDelegateConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from faust.types import TP

log = logging.getLogger(__name__)
CRASH_EXIT_CODE = 99


class InjectedOutage(ConnectionError):
    """The history store is 'down' (fault injection)."""


class Faults:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        raw = environ.get("COMPSTREAM_FAULT_CRASH_AFTER_HISTORY", "")
        self.crash_after_history = int(raw) if raw else None
        down = environ.get("COMPSTREAM_FAULT_HISTORY_DOWN_FILE", "")
        self.history_down_file = Path(down) if down else None
        hold = environ.get("COMPSTREAM_FAULT_HOLD_BEFORE_COMMIT_FILE", "")
        self.hold_before_commit_file = Path(hold) if hold else None
        self.history_writes = 0
        self.drop_batches = int(environ.get("COMPSTREAM_FAULT_DROP_BATCHES", "") or 0)
        self.lose_stall_seeks = int(environ.get("COMPSTREAM_FAULT_LOSE_STALL_SEEKS", "") or 0)
        self.skip_ahead = int(environ.get("COMPSTREAM_FAULT_SKIP_AHEAD", "") or 0)
        self.commits = 0

    def drop_batch(self, size: int) -> bool:
        if self.drop_batches <= 0:
            return False
        self.drop_batches -= 1
        log.error("fault injection: acking a batch of %d messages without processing it", size)
        return True

    def take_skip_ahead(self) -> int:
        skip, self.skip_ahead = self.skip_ahead, 0
        if skip:
            log.error("fault injection: the consumer skips up to %d records", skip)
        return skip

    def lose_stall_seek(self) -> bool:
        if self.lose_stall_seeks <= 0:
            return False
        self.lose_stall_seeks -= 1
        log.error("fault injection: this stall seek does not happen")
        return True

    def before_history_write(self) -> None:
        if self.history_down_file is not None and self.history_down_file.exists():
            raise InjectedOutage(f"history unavailable ({self.history_down_file} exists)")

    def before_commit(self) -> None:
        """A checkpoint's outputs are produced and it is not committed yet
        (transactional: its transaction is open; Faust: its outputs wave is
        delivered, state and positions not) -- the seam CRASH_AFTER_HISTORY
        names on the transactional engine (history rows travel in the
        transaction)."""
        self.commits += 1
        if self.crash_after_history is not None and self.commits >= self.crash_after_history:
            log.error("fault injection: crashing before commit %d", self.commits)
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)
        hold = self.hold_before_commit_file
        if hold is not None and hold.exists():
            log.error("fault injection: holding commit %d while %s exists", self.commits, hold)
            while hold.exists():
                time.sleep(0.05)

    def after_history_write(self) -> None:
        self.history_writes += 1
        if self.crash_after_history is not None and self.history_writes >= self.crash_after_history:
            log.error("fault injection: crashing after history write %d", self.history_writes)
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)


async def skip_consumer(app: faust.App, tp: TP, records: int) -> int:
    """Skip up to `records` records past aiokafka's position (the next record
    it would hand Faust; short of the end): the fetch position moves on the
    consumer thread while Faust's read offset stays (unlike
    faust_compat.seek). Returns how many it skipped."""
    # Faust's aiokafka driver and its private attributes: checked at start-up
    # (engines/faust/compat.check_private_api).
    delegate = cast("ThreadDelegateConsumer", app.consumer)
    thread = cast("AIOKafkaConsumerThread", delegate._thread)
    consumer = thread._ensure_consumer()

    async def _skip() -> int:
        # aiokafka is untyped: its offsets are ints.
        start: int = await consumer.position(tp)
        end: int = (await consumer.end_offsets([tp]))[tp]
        target = min(start + records, end - 1)
        if target <= start:
            return 0
        consumer.seek(tp, target)
        return target - start

    skipped: int = await thread.call_thread(_skip)
    return skipped
