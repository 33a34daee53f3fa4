"""History rows on the history topic: one JSON document per record.

Workers publish their history rows to a Kafka topic inside the batch's
transaction; `compstream sink` (or ClickHouse's Kafka engine, or a Kafka
Connect sink) loads them. A record holds rows of one source partition:

    {"v": 1, "events": [{column: value, ...}], "postings": [...], ...}

Columns are the table columns (rows.py); times are ISO 8601 UTC, `raw` bytes
of dead letters base64. Records stay under RECORD_BYTES_MAX: the broker's
default message.max.bytes is 1 MiB.
"""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime
from typing import Iterator

import orjson

from compstream.history.rows import TABLE_ROW_TYPES, HistoryBatch, HistoryError

WIRE_VERSION = 1
RECORD_BYTES_MAX = 512 * 1024


def _field_kinds(row_type: type) -> tuple[tuple[str, str], ...]:
    kinds = []
    for f in dataclasses.fields(row_type):
        text = str(f.type)
        kind = "datetime" if "datetime" in text else "bytes" if text.startswith("bytes") else "plain"
        kinds.append((f.name, kind))
    return tuple(kinds)


_KINDS = {name: _field_kinds(row_type) for name, row_type in TABLE_ROW_TYPES.items()}


def _default(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_batch(batch: HistoryBatch) -> bytes:
    doc: dict = {"v": WIRE_VERSION}
    for name, rows in batch.by_table.items():
        if rows:
            doc[name] = list(rows)  # orjson serializes the row dataclasses itself (no dict per row)
    return orjson.dumps(doc, default=_default, option=orjson.OPT_NAIVE_UTC)


def decode_batch(data: bytes) -> HistoryBatch:
    """Raises HistoryError with the reason on anything that is not a record of
    this format (a poison record must be named, never half loaded)."""
    try:
        doc = orjson.loads(data)
        if not isinstance(doc, dict) or doc.get("v") != WIRE_VERSION:
            raise HistoryError(f"not a history record of version {WIRE_VERSION}")
        tables = {}
        for name, raw_rows in doc.items():
            if name == "v":
                continue
            row_type = TABLE_ROW_TYPES.get(name)
            if row_type is None or not isinstance(raw_rows, list):
                raise HistoryError(f"unknown history table {name!r}")
            tables[name] = tuple(row_type(**_decoded(name, r)) for r in raw_rows)
        return HistoryBatch(**tables)
    except HistoryError:
        raise
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise HistoryError(f"bad history record: {type(exc).__name__}: {exc}") from exc


def _decoded(table: str, raw: dict) -> dict:
    out = dict(raw)
    for name, kind in _KINDS[table]:
        value = out.get(name)
        if value is None:
            continue
        if kind == "datetime":
            out[name] = datetime.fromisoformat(value)
        elif kind == "bytes":
            out[name] = base64.b64decode(value, validate=True)
    return out


def encode_records(batch: HistoryBatch, bytes_max: int = RECORD_BYTES_MAX) -> Iterator[bytes]:
    """The batch as records of at most `bytes_max` bytes each, rows in order
    (split into even pieces, a piece still over the bound split again; a
    single row over the bound raises). Each record is byte for byte
    `encode_batch` of its rows."""
    names = [name for name, table in batch.by_table.items() for _ in table]
    if not names:
        return
    # Each row encoded once: orjson writes a document as compact JSON, so a
    # record is its rows' JSON joined (what encode_batch would write for
    # them), and a piece's size is known without encoding it again.
    encoded = [orjson.dumps(r, default=_default, option=orjson.OPT_NAIVE_UTC)
               for table in batch.by_table.values() for r in table]
    yield from _pieces(names, encoded, 0, len(names), bytes_max)


_HEAD = b'{"v":' + str(WIRE_VERSION).encode()


def _runs(names: list[str], lo: int, hi: int) -> Iterator[tuple[str, int, int]]:
    """(table, start, end) of each run of one table's rows in lo..hi (the rows
    come in HistoryBatch's table order)."""
    start = lo
    while start < hi:
        name = names[start]
        end = start + 1
        while end < hi and names[end] == name:
            end += 1
        yield name, start, end
        start = end


def _document(names: list[str], encoded: list[bytes], lo: int, hi: int) -> bytes:
    """encode_batch's bytes for rows lo..hi (one list per table)."""
    parts = [_HEAD]
    for name, start, end in _runs(names, lo, hi):
        parts.append(b',"' + name.encode() + b'":[' + b",".join(encoded[start:end]) + b"]")
    parts.append(b"}")
    return b"".join(parts)


def _size(names: list[str], encoded: list[bytes], lo: int, hi: int) -> int:
    """len(_document(names, encoded, lo, hi)) without building it."""
    # Per table: n rows, n - 1 commas, one "]": n bytes besides the rows.
    size = len(_HEAD) + 1 + sum(len(e) for e in encoded[lo:hi]) + (hi - lo)
    for name, _start, _end in _runs(names, lo, hi):
        size += len(name) + 5  # ,"name":[
    return size


def _pieces(names: list[str], encoded: list[bytes], lo: int, hi: int, bytes_max: int) -> Iterator[bytes]:
    size = _size(names, encoded, lo, hi)
    if size <= bytes_max:
        yield _document(names, encoded, lo, hi)
        return
    if hi - lo == 1:
        raise HistoryError(f"one {names[lo]} row encodes to {size} bytes, over {bytes_max}")
    # Even pieces sized from the whole (one more for slack), not halving:
    # halving re-encoded every row log2(size/bound) times.
    pieces = min(hi - lo, -(-size // bytes_max) + 1)
    step = -(-(hi - lo) // pieces)
    for start in range(lo, hi, step):
        yield from _pieces(names, encoded, start, min(start + step, hi), bytes_max)
