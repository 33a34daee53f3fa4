"""Event sources of `compstream replay` besides files: the Kafka source topics
and the ClickHouse history. Each knows its size up front (for the progress
bar), maps input positions back to Kafka coordinates (for conflict reports)
and must be closed (consumer / chdb handle)."""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Iterator

from compstream.config import Settings
from compstream.domain.events import Event
from compstream.replay.history_source import HistorySourceError, history_event_total, history_events
from compstream.replay.kafka_source import BadMessage, CoordMap, open_consumer, resolve_ranges, source_events
from compstream.replay.late_decisions import Late, read_late, store_late

TICK_EVERY = 500  # progress-bar updates are batched; one per record is slow


class _Ticker:
    def __init__(self, advance: Callable[[int], None]):
        self.advance, self.pending = advance, 0

    def __call__(self) -> None:
        self.pending += 1
        if self.pending >= TICK_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.advance(self.pending)
            self.pending = 0


class KafkaReplaySource:
    """The usage + grants topics, bounded by the end offsets seen at open."""

    unit = "messages"

    def __init__(self, settings: Settings, *, from_offsets: dict | None = None,
                 to_offsets: dict | None = None, since: datetime | None = None,
                 until: datetime | None = None):
        self.topics = settings.topics
        self.consumer = open_consumer(settings.kafka_bootstrap)
        try:
            self.ranges = resolve_ranges(
                self.consumer, [settings.topics.usage, settings.topics.grants],
                from_offsets=from_offsets, to_offsets=to_offsets, since=since, until=until)
        except BaseException:
            self.consumer.close()
            raise
        self.total = sum(r.size for r in self.ranges)
        self.coords = CoordMap()

    def events(self, on_bad: Callable[[BadMessage], None],
               advance: Callable[[int], None]) -> Iterator[Event]:
        tick = _Ticker(advance)
        yield from source_events(self.consumer, self.ranges, on_bad, coords=self.coords, on_record=tick)
        tick.flush()

    def late(self) -> Late:
        """The books' late decisions, from the history topic."""
        return read_late(self.consumer, self.topics)

    def close(self) -> None:
        self.consumer.close()


class HistoryReplaySource:
    """The history's events table. An embedded (chdb) path can be held by one
    process only: refuse while this data dir's worker runs rather than fail
    deep inside the engine."""

    unit = "events"

    def __init__(self, settings: Settings):
        from compstream.history import open_history
        from compstream.worker.run import running_pid

        dsn = settings.clickhouse_dsn
        pid = running_pid(settings)
        if dsn.startswith("chdb") and pid is not None:
            raise HistorySourceError(
                f"the worker (pid {pid}) holds the embedded history {dsn}; stop it first "
                "(or point COMPSTREAM_CLICKHOUSE_DSN at a ClickHouse server)")
        try:
            self.store = open_history(dsn)
        except Exception as exc:
            raise HistorySourceError(f"cannot open history {dsn}: {exc}") from exc
        try:
            self.total = history_event_total(self.store)
        except Exception as exc:
            self.store.close()
            raise HistorySourceError(f"cannot read history {dsn} (is it migrated?): {exc}") from exc
        self.coords = CoordMap()

    def events(self, on_bad: Callable[[BadMessage], None],
               advance: Callable[[int], None]) -> Iterator[Event]:
        tick = _Ticker(advance)
        yield from history_events(self.store, on_bad, coords=self.coords, on_row=tick)
        tick.flush()

    def late(self) -> Late:
        """History's late decisions (those its postings follow)."""
        try:
            return store_late(self.store)
        except Exception as exc:
            raise HistorySourceError(f"cannot read the late events of the history: {exc}") from exc

    def close(self) -> None:
        self.store.close()
