"""The contract suite on the real ClickHouse engine (chdb, in-process), plus
the properties only a real engine can show: the DDL, mutations as tampering,
and the raw `count() = uniqExact(event_id)` check auditors would run."""

from __future__ import annotations

import uuid

import pytest

from compstream.history import HistoryBatch
from compstream.history.clickhouse import ClickHouseHistoryStore, _clients

from . import data
from .contract import HistoryStoreContract

MUTATE = {"mutations_sync": 1}


class TestClickHouseHistoryStore(HistoryStoreContract):
    @pytest.fixture
    def store(self, ch_store):
        assert isinstance(ch_store, ClickHouseHistoryStore)
        return ch_store

    def tamper_amount(self, store, engineer_id, seq, amount):
        store.command(
            f"ALTER TABLE {store.database}.postings UPDATE amount_nanos = {int(amount)} "
            f"WHERE engineer_id = '{engineer_id}' AND seq = {int(seq)}",
            settings=MUTATE,
        )

    def tamper_delete(self, store, engineer_id, seq):
        store.command(
            f"ALTER TABLE {store.database}.postings DELETE WHERE engineer_id = '{engineer_id}' AND seq = {int(seq)}",
            settings=MUTATE,
        )

    def tamper_insert(self, store, row):
        store.append_batch(HistoryBatch(postings=(row,)), f"forged-{uuid.uuid4()}")


def _raw_counts(store, table="events"):
    return store.query_rows(f"SELECT count(), uniqExact(event_id) FROM {store.database}.{table}")[0]


def test_raw_sql_count_equals_unique_after_identical_retry(ch_store):
    batch = data.full_batch()
    for _ in range(3):
        ch_store.append_batch(batch, "compstream.usage:0:0-35")
    rows, unique = _raw_counts(ch_store)
    assert rows == unique == len(batch.events)


def test_raw_sql_after_overlapping_rebatch(ch_store):
    rows = data.event_rows()
    ch_store.append_batch(HistoryBatch(events=tuple(rows[:12])), "compstream.usage:0:0-11")
    ch_store.append_batch(HistoryBatch(events=tuple(rows[6:])), "compstream.usage:0:6-17")
    raw = _raw_counts(ch_store)
    assert raw == (len(rows) + 6, len(rows))  # the 6 overlapping rows are physically twice
    final = ch_store.query_rows(f"SELECT count(), uniqExact(event_id) FROM {ch_store.database}.events FINAL")[0]
    assert final == (len(rows), len(rows))
    ch_store.optimize()
    assert _raw_counts(ch_store) == (len(rows), len(rows))


def test_without_token_setting_duplicates_would_land(ch_store):
    """Control: proves the token is what deduplicates (this test can fail)."""
    rows = data.event_rows()[:4]
    ch_store.append_batch(HistoryBatch(events=tuple(rows)), "a")
    ch_store.append_batch(HistoryBatch(events=tuple(rows)), "b")
    assert _raw_counts(ch_store) == (8, 4)


def test_ddl_uses_int64_money_and_partitions(ch_store):
    db = ch_store.database
    money = ch_store.query_rows(
        "SELECT table, name, type FROM system.columns WHERE database = {d:String} AND name LIKE '%nanos'",
        {"d": db},
    )
    assert money and all("Int64" in t and "Float" not in t for _, _, t in money)
    tables = dict(ch_store.query_rows(
        "SELECT name, engine_full FROM system.tables WHERE database = {d:String}", {"d": db}
    ))
    assert set(tables) == {"schema_migrations", "events", "postings", "dead_letters", "leaderboard_windows", "digests",
                           "watermarks"}
    for name in ("events", "postings"):
        assert "PARTITION BY toYYYYMM(event_time)" in tables[name]
        assert "ORDER BY (engineer_id, event_time" in tables[name]
        assert "non_replicated_deduplication_window = 10000" in tables[name]


def test_client_is_shared_per_dsn_and_released(chdb_dsn, chdb_holder):
    a = ClickHouseHistoryStore(chdb_dsn, database="h_share_a")
    b = ClickHouseHistoryStore(chdb_dsn, database="h_share_b")
    assert a._client is b._client is chdb_holder._client
    assert _clients[chdb_dsn][1] == 3
    a.close()
    a.close()  # idempotent: must not release twice
    b.close()
    assert _clients[chdb_dsn][1] == 1


def test_data_survives_reopen_on_disk(tmp_path):
    """A fresh path needs the shared engine released: run in a subprocess."""
    import subprocess
    import sys

    code = (
        "from compstream.history import open_history\n"
        "from tests.history import data\n"
        "import sys\n"
        "s = open_history(sys.argv[1]); s.migrate()\n"
        "if sys.argv[2] == 'write': s.append_batch(data.full_batch(), 'reopen')\n"
        "print(s.count_events(), len(s.postings_for('alice'))); s.close()\n"
    )
    dsn = f"chdb://{tmp_path}/ch"
    env_cwd = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    out1, out2 = (subprocess.run([sys.executable, "-c", code, dsn, mode], capture_output=True, text=True,
                                 cwd=env_cwd, check=True) for mode in ("write", "read"))
    assert out1.stdout.split() == out2.stdout.split() == [str(len(data.event_rows())), "9"]
