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
    assert len(records) <= 2 * -(-len(encode_batch(batch)) // bytes_max) + tables


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


def test_the_generated_row_decoders_build_what_the_row_classes_build():
    """Each table's fast decoder (every column present) against the row
    class's own __init__ over the same JSON object."""
    batch = replace(data.full_batch(), digests=(DigestRow("2026-10", "ab" * 32, 2, 7, data.t(11, 1)),),
                    watermarks=(WatermarkRow(0, data.t(10, 2), data.t(10, 3)),))
    for name, rows in batch.by_table.items():
        assert rows, f"no {name} rows to check"
        for row in rows:
            obj = orjson.loads(orjson.dumps(row, default=wire._default, option=orjson.OPT_NAIVE_UTC))
            fast = wire._DECODERS[name](obj)
            assert fast is not None, name
            assert type(fast) is type(row)
            assert fast == row == type(row)(**wire._decoded(name, obj))


def test_a_row_not_taken_by_the_fast_decoder_goes_the_general_way():
    row = data.event_rows()[0]
    obj = orjson.loads(orjson.dumps(row, option=orjson.OPT_NAIVE_UTC))
    del obj["late"]  # a column with a default: the general path fills it
    record = orjson.dumps({"v": wire.WIRE_VERSION, "events": [obj]})
    assert decode_batch(record).events == (row,)
    obj["late"], obj["surprise"] = False, 1  # an unknown column: refused, named
    with pytest.raises(HistoryError, match="bad history record"):
        decode_batch(orjson.dumps({"v": wire.WIRE_VERSION, "events": [obj]}))
    obj.pop("surprise")
    obj["event_time"] = 5  # a bad value: the general path's error
    with pytest.raises(HistoryError, match="bad history record"):
        decode_batch(orjson.dumps({"v": wire.WIRE_VERSION, "events": [obj]}))
