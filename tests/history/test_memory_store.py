from __future__ import annotations

import dataclasses

import pytest

from compstream.history import open_history
from compstream.history.memory import MemoryHistoryStore

from .contract import HistoryStoreContract


class TestMemoryHistoryStore(HistoryStoreContract):
    @pytest.fixture
    def store(self):
        store = open_history("memory://")
        assert isinstance(store, MemoryHistoryStore)
        store.migrate()
        yield store
        store.close()

    def tamper_amount(self, store, engineer_id, seq, amount):
        rows = store.tables["postings"]
        for i, row in enumerate(rows):
            if row.engineer_id == engineer_id and row.seq == seq:
                rows[i] = dataclasses.replace(row, amount_nanos=amount)

    def tamper_delete(self, store, engineer_id, seq):
        store.tables["postings"] = [
            r for r in store.tables["postings"] if not (r.engineer_id == engineer_id and r.seq == seq)
        ]

    def tamper_insert(self, store, row):
        store.tables["postings"].append(row)


def test_open_history_rejects_unknown_dsn():
    from compstream.history import HistoryError

    with pytest.raises(HistoryError):
        open_history("postgres://x")


def test_period_bounds_roll_over_the_year():
    from datetime import datetime, timezone

    from compstream.history import HistoryError, period_bounds

    start, end = period_bounds("2026-12")
    assert (start, end) == (datetime(2026, 12, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc))
    for bad in ("2026-00", "2026-1", "26-01", "2026/01"):
        with pytest.raises(HistoryError):
            period_bounds(bad)


def test_memory_history_runs_no_sql():
    from compstream.history import HistoryError

    store = open_history("memory://", database="elsewhere")
    assert store.database == "elsewhere"
    with pytest.raises(HistoryError, match="ClickHouse"):
        store.query_rows("SELECT 1")
