"""History rows on the history topic: round trip, record bound, order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compstream.history.rows import HistoryBatch, HistoryError
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


def _split_by_encoding(batch: HistoryBatch, bytes_max: int) -> list[bytes]:
    """The split as first written (every piece encoded with encode_batch):
    the reference encode_records must match byte for byte."""
    data = encode_batch(batch)
    if len(data) <= bytes_max:
        return [data] if batch.row_count() else []
    rows = [(name, r) for name, table in batch.by_table.items() for r in table]
    pieces = min(len(rows), -(-len(data) // bytes_max) + 1)
    step = -(-len(rows) // pieces)
    out = []
    for start in range(0, len(rows), step):
        tables: dict[str, list] = {}
        for name, row in rows[start:start + step]:
            tables.setdefault(name, []).append(row)
        out += _split_by_encoding(HistoryBatch(**{k: tuple(v) for k, v in tables.items()}), bytes_max)
    return out


@settings(max_examples=30, deadline=None)
@given(bytes_max=st.integers(1_500, 40_000))
def test_records_are_encode_batch_of_their_rows_byte_for_byte(bytes_max):
    batch = data.full_batch()
    assert list(encode_records(batch, bytes_max)) == _split_by_encoding(batch, bytes_max)


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
