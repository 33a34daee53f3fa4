"""The ingest journal: what each source row was booked as, to detect restatements.

A small sqlite3 file (`<data_dir>/ingest-journal.sqlite`), one row per
original usage event, keyed by that event's deterministic id:

- `fingerprint`: the source numbers last booked (tokens by kind + provider
  cost), so a re-ingest with equal numbers is a no-op and different numbers
  are a restatement;
- `revision`: how many events exist for the row (1 = the original; each
  correction adds one) — it feeds the correction id;
- booked totals (`tokens_json`, `booked_cost_nanos`) so corrections carry
  exact deltas, and `unpriced_reason` when the current numbers are unpriced;
- `detail_json`: provider, model, time, the full token split (incl. 1-hour
  cache writes) and price context, so `reprice` can price it later;
- `revision_marker`: GCP `export_time`; an older export is stale and ignored.

One ingest run is one transaction (BEGIN IMMEDIATE: concurrent runs
serialise); the caller commits only after the events are delivered, so a
failed publish leaves the journal as it was and a re-run is safe.

Rebuilding: the journal is derived state. `rebuild(events)` recreates it from
the usage topic (every original and correction event; `compstream ingest
rebuild-journal`, or ingest itself when it finds its journal empty and the
topic not, see ingest/topic_journal.py): totals and revisions are summed per
original id, a repeated event id counts once; the fingerprint is unknown after
a rebuild, so the next ingest compares canonical totals instead and adopts the
fingerprint when they agree. The revision marker comes back from the record
header ingest publishes it in (REVISION_MARKER_HEADER); records sent before
that header existed have none, and a stale GCP export re-sent after such a
rebuild becomes a correction instead of being ignored.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from compstream.domain.events import Usage
from compstream.ingest.model import IngestError

JOURNAL_FILE = "ingest-journal.sqlite"
# Kafka record header carrying the row's revision marker (GCP export_time), so
# a rebuilt journal still knows which export is newer.
REVISION_MARKER_HEADER = "compstream-revision-marker"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    event_id          TEXT PRIMARY KEY,
    source            TEXT NOT NULL,
    identity_key      TEXT,
    engineer_id       TEXT NOT NULL,
    revision          INTEGER NOT NULL,
    fingerprint       TEXT,
    revision_marker   TEXT,
    tokens_json       TEXT NOT NULL,
    booked_cost_nanos INTEGER NOT NULL,
    unpriced_reason   TEXT,
    price_version     TEXT,
    detail_json       TEXT,
    updated_at        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rows_unpriced ON rows (event_id) WHERE unpriced_reason IS NOT NULL;
"""


@dataclass
class Entry:
    event_id: str
    source: str
    identity_key: str | None
    engineer_id: str
    revision: int
    fingerprint: str | None
    revision_marker: str | None
    tokens: dict[str, int]  # canonical booked totals: input, output, cache_read, cache_write
    booked_cost_nanos: int
    unpriced_reason: str | None
    price_version: str | None
    detail: dict | None


class Journal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )
            (version,) = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise IngestError(f"{self.path}: cannot open ingest journal: {exc}") from exc
        if version != SCHEMA_VERSION:
            raise IngestError(f"{self.path}: journal schema {version}, this build reads {SCHEMA_VERSION}")
        self._in_tx = False

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> "Journal":
        return cls(Path(data_dir) / JOURNAL_FILE)

    # --- transactions ---------------------------------------------------
    def begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_tx = True

    def commit(self) -> None:
        if self._in_tx:
            self._db.execute("COMMIT")
            self._in_tx = False

    def rollback(self) -> None:
        if self._in_tx:
            self._db.execute("ROLLBACK")
            self._in_tx = False

    def close(self) -> None:
        self.rollback()
        self._db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- rows -------------------------------------------------------------
    def get(self, event_id: str) -> Entry | None:
        row = self._db.execute("SELECT * FROM rows WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else self._entry(row)

    def put(self, entry: Entry) -> None:
        self.begin()
        self._db.execute(
            "INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                entry.event_id,
                entry.source,
                entry.identity_key,
                entry.engineer_id,
                entry.revision,
                entry.fingerprint,
                entry.revision_marker,
                json.dumps(entry.tokens, sort_keys=True),
                entry.booked_cost_nanos,
                entry.unpriced_reason,
                entry.price_version,
                None if entry.detail is None else json.dumps(entry.detail, sort_keys=True),
                datetime.now(timezone.utc).isoformat(),
            ),
        )

    def unpriced(self) -> Iterator[Entry]:
        cursor = self._db.execute("SELECT * FROM rows WHERE unpriced_reason IS NOT NULL ORDER BY event_id")
        while batch := cursor.fetchmany(500):
            for row in batch:
                yield self._entry(row)

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]

    def snapshot(self) -> list[tuple]:
        """Every row minus the timestamp (tests compare journals with it)."""
        return [row[:-1] for row in self._db.execute("SELECT * FROM rows ORDER BY event_id")]

    @staticmethod
    def _entry(row: tuple) -> Entry:
        return Entry(
            event_id=row[0],
            source=row[1],
            identity_key=row[2],
            engineer_id=row[3],
            revision=row[4],
            fingerprint=row[5],
            revision_marker=row[6],
            tokens=json.loads(row[7]),
            booked_cost_nanos=row[8],
            unpriced_reason=row[9],
            price_version=row[10],
            detail=None if row[11] is None else json.loads(row[11]),
        )

    # --- rebuild ----------------------------------------------------------
    def rebuild(self, events: Iterable[Usage]) -> "RebuildStats":
        """Recreate every row from usage events read back from the topic."""
        return self.rebuild_marked((event, None) for event in events)

    def rebuild_marked(self, records: Iterable[tuple[Usage, str | None]]) -> "RebuildStats":
        """Recreate every row from (usage event, revision marker) in topic order.

        Replaces the journal's rows (one transaction with whatever the caller
        does next; the caller commits). An event id seen before is skipped as
        the worker skips it (first occurrence wins), so a re-sent export is
        not counted twice. The marker is the publish header ingest writes
        (`REVISION_MARKER_HEADER`); the newest one seen is kept.
        """
        self.begin()
        self._db.execute("DELETE FROM rows")
        # Seen ids live in SQLite, not in memory: the topic may be large.
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS rebuild_seen (event_id TEXT PRIMARY KEY)")
        self._db.execute("DELETE FROM rebuild_seen")
        stats = RebuildStats()
        for event, marker in records:
            if self._db.execute("INSERT OR IGNORE INTO rebuild_seen VALUES (?)", (event.event_id,)).rowcount == 0:
                stats.duplicates += 1
                continue
            stats.events += 1
            original = event.corrects_event_id or event.event_id
            entry = self.get(original)
            if entry is None:
                stats.rows += 1
                entry = Entry(
                    event_id=original,
                    source=original.split(":", 1)[0],
                    identity_key=None,
                    engineer_id=event.engineer_id,
                    revision=0,
                    fingerprint=None,
                    revision_marker=None,
                    tokens={"input": 0, "output": 0, "cache_read": 0, "cache_write": 0},
                    booked_cost_nanos=0,
                    unpriced_reason=None,
                    price_version=None,
                    detail=None,
                )
            entry.revision += 1
            entry.tokens["input"] += event.input_tokens
            entry.tokens["output"] += event.output_tokens
            entry.tokens["cache_read"] += event.cache_read_tokens
            entry.tokens["cache_write"] += event.cache_write_tokens
            if event.cost_nanos is not None:
                entry.booked_cost_nanos += event.cost_nanos
            # The latest event decides whether the row is currently priced.
            entry.unpriced_reason = event.unpriced_reason if event.cost_nanos is None else None
            entry.price_version = event.price_version or entry.price_version
            if marker and marker > (entry.revision_marker or ""):
                entry.revision_marker = marker
            if event.corrects_event_id is None:
                entry.engineer_id = event.engineer_id
                entry.detail = {
                    "provider": event.provider,
                    "model": event.model,
                    "occurred_at": event.occurred_at.isoformat(),
                    "tokens": {},
                    "price_context": [],
                    "provider_cost": False,
                }
            if entry.detail is not None:
                entry.detail["tokens"] = dict(entry.tokens)
            self.put(entry)
        self._db.execute("DELETE FROM rebuild_seen")
        return stats


@dataclass
class RebuildStats:
    rows: int = 0  # journal rows written (one per original id)
    events: int = 0  # usage events folded in
    duplicates: int = 0  # repeated event ids, skipped (first occurrence wins)
