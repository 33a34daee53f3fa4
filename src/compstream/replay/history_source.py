"""The ClickHouse history's `events` table as canonical events (payload JSON).

For when the source topics are gone or damaged: the history keeps every event
the worker applied (plus HR events), each with its canonical JSON payload.
It does not keep duplicates, conflicts or dead letters, so a replay from it
equals a replay of the topics minus what the worker rejected.

Read page by page (keyset on the Kafka coordinates) so memory holds one page
of rows besides the events themselves.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from compstream.domain.events import Event, EventError, event_from_dict
from compstream.replay.kafka_source import BadMessage, CoordMap

PAGE_ROWS = 10_000


class HistorySourceError(RuntimeError):
    """The history cannot be read (locked chdb path, unreachable server, no tables)."""


def _pages_sql(store) -> Iterator[list[tuple]]:
    db = store.database
    after = ("", -1, -1)
    while True:
        rows = store.query_rows(
            f"SELECT kafka_topic, kafka_partition, kafka_offset, payload FROM {db}.events FINAL "
            "WHERE (kafka_topic, kafka_partition, kafka_offset) > ({t:String}, {p:Int32}, {o:Int64}) "
            f"ORDER BY kafka_topic, kafka_partition, kafka_offset LIMIT 1 BY kafka_topic, kafka_partition, "
            f"kafka_offset LIMIT {PAGE_ROWS}",
            {"t": after[0], "p": after[1], "o": after[2]},
        )
        if not rows:
            return
        yield rows
        last = rows[-1]
        after = (last[0], int(last[1]), int(last[2]))
        if len(rows) < PAGE_ROWS:
            return


def _pages_memory(store) -> Iterator[list[tuple]]:
    # The in-memory adapter (tests): same order, collapsed like FINAL.
    seen: dict[Any, Any] = {}
    for row in store.tables["events"]:
        seen.setdefault((row.kafka_topic, row.kafka_partition, row.kafka_offset), row.payload)
    rows = [(*k, v) for k, v in sorted(seen.items())]
    for i in range(0, len(rows), PAGE_ROWS):
        yield rows[i:i + PAGE_ROWS]


def history_event_total(store) -> int:
    """Distinct stored events (for a progress bar)."""
    return store.count_events()


def history_events(store, on_bad: Callable[[BadMessage], None], *, coords: CoordMap | None = None,
                   on_row: Callable[[], None] | None = None) -> Iterator[Event]:
    """Every stored event in Kafka coordinate order; an unreadable payload is
    reported (stage `history:payload`) with its coordinates."""
    if hasattr(store, "query_rows"):
        pages = _pages_sql(store)
    elif hasattr(store, "tables"):
        pages = _pages_memory(store)
    else:
        raise HistorySourceError(f"{type(store).__name__} cannot list its events")
    for page in pages:
        for topic, partition, offset, payload in page:
            if on_row is not None:
                on_row()
            try:
                event = event_from_dict(json.loads(payload))
            except (ValueError, EventError) as exc:
                on_bad(BadMessage(topic, int(partition), int(offset), "history:payload", str(exc)))
                continue
            if coords is not None:
                coords.add(topic, int(partition), int(offset))
            yield event
