"""The history store's `events` table as canonical events (payload JSON).

For when the source topics are gone or damaged: the history keeps every event
the worker applied (plus HR events), each with its canonical JSON payload.
It does not keep duplicates, conflicts or dead letters, so a replay from it
equals a replay of the topics minus what the worker rejected.

Read page by page (keyset on the Kafka coordinates) so memory holds one page
of rows besides the events themselves.
"""

from __future__ import annotations

import json
from typing import Callable, Iterator

from compstream.domain.events import Event, EventError, event_from_dict
from compstream.history.rows import EVENT_COORD_START, StoredPayload
from compstream.history.store import HistoryStore
from compstream.replay.kafka_source import BadMessage, CoordMap

PAGE_ROWS = 10_000


class HistorySourceError(RuntimeError):
    """The history cannot be read (locked chdb path, unreachable server, no tables)."""


def _pages(store: HistoryStore) -> Iterator[list[StoredPayload]]:
    after = EVENT_COORD_START
    while True:
        page = store.event_payloads(after, PAGE_ROWS)
        if not page:
            return
        yield page
        if len(page) < PAGE_ROWS:
            return
        after = page[-1].coord


def history_event_total(store: HistoryStore) -> int:
    """Distinct stored events (for a progress bar)."""
    return store.count_events()


def history_events(store: HistoryStore, on_bad: Callable[[BadMessage], None], *, coords: CoordMap | None = None,
                   on_row: Callable[[], None] | None = None) -> Iterator[Event]:
    """Every stored event in Kafka coordinate order; an unreadable payload is
    reported (stage `history:payload`) with its coordinates."""
    for page in _pages(store):
        for topic, partition, offset, payload in page:
            if on_row is not None:
                on_row()
            try:
                event = event_from_dict(json.loads(payload))
            except (ValueError, EventError) as exc:
                on_bad(BadMessage(topic, partition, offset, "history:payload", str(exc)))
                continue
            if coords is not None:
                coords.add(topic, partition, offset)
            yield event
