"""History rows on the history topic: round trip, record bound, order."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compstream.history import wire
from compstream.history.rows import DigestRow, HistoryBatch, HistoryError, WatermarkRow
from compstream.history.wire import decode_batch, encode_batch, encode_records
from history import data


def _rows(batch: HistoryBatch) -> list:
    return [r for table in batch.by_table.values() for r in table]


def test_a_full_batch_round_trips_every_table():
    batch = data.full_batch()
    (record,) = list(encode_records(batch))
    assert decode_batch(record) == batch


@settings(max_examples=30, deadline=None)
@given(bytes_max=st.integers(2_000, 20_000))
def test_records_stay_under_the_bound_and_keep_row_order(bytes_max):
    batch = data.full_batch()
    records = list(encode_records(batch, bytes_max))
    assert all(len(r) <= bytes_max for r in records)
    decoded = [row for r in records for row in _rows(decode_batch(r))]
    by_table = {name: [row for row in decoded if isinstance(row, type(rows[0]))]
                for name, rows in batch.by_table.items() if rows}
    assert {name: tuple(rows) for name, rows in by_table.items()} == {
        name: rows for name, rows in batch.by_table.items() if rows}


def _repeated(rows: list, n: int) -> tuple:
    return tuple((rows * (n // len(rows) + 1))[:n])


@settings(max_examples=60, deadline=None)
@given(n_events=st.integers(0, 300), n_postings=st.integers(0, 300), n_dead=st.integers(0, 30),
       bytes_max=st.integers(1_500, 60_000))
def test_records_are_encode_batch_of_their_rows_and_nearly_full(n_events, n_postings, n_dead, bytes_max):
    """Rows of different sizes (dead letters carry raw bytes): every record is
    byte for byte encode_batch of its rows, under the bound, rows in order, and
    the records are not many more than the bytes need."""
    batch = HistoryBatch(events=_repeated(data.event_rows(), n_events),
                         postings=_repeated(data.posting_rows(), n_postings),
                         dead_letters=_repeated(data.dead_letter_rows(), n_dead))
    records = list(encode_records(batch, bytes_max))
    decoded = [decode_batch(r) for r in records]
    assert [encode_batch(d) for d in decoded] == records
    assert all(len(r) <= bytes_max for r in records)
    assert [row for d in decoded for row in _rows(d)] == _rows(batch)
    tables = sum(1 for rows in batch.by_table.values() if rows)
    # Each record repeats its tables' column names: the room left for rows.
    room = bytes_max - len(wire._HEAD) - max(len(h) for h in wire._TABLE_HEAD.values()) - 2
    assert len(records) <= 2 * -(-len(encode_batch(batch)) // room) + tables


def test_a_batch_exactly_at_the_bound_is_one_record():
    batch = data.full_batch()
    whole = encode_batch(batch)
    assert list(encode_records(batch, len(whole))) == [whole]
    assert len(list(encode_records(batch, len(whole) - 1))) > 1


def test_an_empty_batch_writes_no_record():
    assert list(encode_records(HistoryBatch())) == []


def test_a_single_row_over_the_bound_is_named():
    with pytest.raises(HistoryError, match="row encodes to"):
        list(encode_records(HistoryBatch(events=(data.event_rows()[0],)), 100))


def test_a_poison_record_is_refused_with_its_reason():
    with pytest.raises(HistoryError, match="not a history record"):
        decode_batch(b'{"v": 99}')
    with pytest.raises(HistoryError, match="bad history record"):
        decode_batch(b"\xff not json")


def _values(row) -> list:
    """A row as its record array (what a version 2 record holds)."""
    return orjson.loads(orjson.dumps(wire._VALUES[_table_of(row)](row), default=wire._default,
                                     option=orjson.OPT_NAIVE_UTC))


def _table_of(row) -> str:
    return next(name for name, row_type in wire.TABLE_ROW_TYPES.items() if type(row) is row_type)


def test_the_generated_row_decoders_build_what_the_row_classes_build():
    """Each table's fast decoder (the record's array of every column) against
    the row class's own __init__ over the same values by name."""
    batch = replace(data.full_batch(), digests=(DigestRow("2026-10", "ab" * 32, 2, 7, data.t(11, 1)),),
                    watermarks=(WatermarkRow(0, data.t(10, 2), data.t(10, 3)),))
    for name, rows in batch.by_table.items():
        assert rows, f"no {name} rows to check"
        for row in rows:
            values = _values(row)
            fast = wire._DECODERS[name](values)
            assert fast is not None, name
            assert type(fast) is type(row)
            assert fast == row == type(row)(**wire._decoded(name, dict(zip(wire._COLUMNS[name], values, strict=True))))


def _record(columns, *rows) -> bytes:
    return orjson.dumps({"v": 2, "events": {"columns": list(columns), "rows": [list(r) for r in rows]}})


def test_a_record_of_other_columns_is_read_by_name():
    """A record of a build whose columns differ: a column with a default
    missing is filled, an unknown column is refused and named, and a bad
    value is refused with the row class's reason."""
    row = data.event_rows()[0]
    columns = list(wire._COLUMNS["events"])
    values = _values(row)
    i = columns.index("late")
    assert decode_batch(_record(columns[:i] + columns[i + 1:], values[:i] + values[i + 1:])).events == (row,)
    with pytest.raises(HistoryError, match="bad history record"):
        decode_batch(_record(columns + ["surprise"], values + [1]))
    bad = list(values)
    bad[columns.index("event_time")] = 5
    with pytest.raises(HistoryError, match="bad history record"):
        decode_batch(_record(columns, bad))
    with pytest.raises(HistoryError, match="2 values for"):
        decode_batch(_record(columns, values[:2]))
    with pytest.raises(HistoryError, match="not an object of columns and rows"):
        decode_batch(orjson.dumps({"v": 2, "events": [values]}))


def test_version_1_records_are_still_read():
    """Records an older worker left on the topic (each row an object of its
    columns) load as the same rows."""
    batch = data.full_batch()
    doc = {"v": 1}
    for name, rows in batch.by_table.items():
        if rows:
            doc[name] = [dict(zip(wire._COLUMNS[name], _values(r), strict=True)) for r in rows]
    assert decode_batch(orjson.dumps(doc)) == batch


def test_a_version_2_record_is_smaller_than_its_version_1_form():
    batch = HistoryBatch(events=tuple(data.event_rows()), postings=tuple(data.posting_rows()))
    v1 = orjson.dumps({"v": 1, **{name: list(rows) for name, rows in batch.by_table.items() if rows}},
                      option=orjson.OPT_NAIVE_UTC)
    (v2,) = list(encode_records(batch))
    assert decode_batch(v1) == decode_batch(v2) == batch
    assert len(v2) < 0.8 * len(v1), (len(v2), len(v1))


def test_a_row_of_one_column_is_still_an_array():
    class One:
        a = 7

    class Two:
        a, b = 7, 8

    assert wire._values_of(("a",))(One()) == (7,)
    assert wire._values_of(("a", "b"))(Two()) == (7, 8)
