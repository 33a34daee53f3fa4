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
from typing import Any, Callable, Iterator

import orjson

from compstream.domain.twin import fast_constructor
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
            fast, width = _DECODERS[name], _WIDTH[name]
            rows = []
            for r in raw_rows:
                row = fast(r) if isinstance(r, dict) and len(r) == width else None
                rows.append(row if row is not None else row_type(**_decoded(name, r)))
            tables[name] = tuple(rows)
        return HistoryBatch(**tables)
    except HistoryError:
        raise
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise HistoryError(f"bad history record: {type(exc).__name__}: {exc}") from exc


def _row_decoder(table: str, row_type: type) -> Callable[[dict], Any]:
    """A function building `table`'s row from a decoded JSON object that has
    every column (positional, through domain/twin's constructor where the
    class allows it): the loader decodes every row, and `row_type(**...)`
    with a copied dict cost ~16 µs an event row. Returns None for an object
    it cannot take as is (a missing column, a bad value): the general path
    then decides, with its error."""
    try:
        build: Callable[..., Any] = fast_constructor(row_type)
    except TypeError:  # not a slotted dataclass: its own __init__, positionally
        build = row_type
    args = []
    for name, kind in _KINDS[table]:
        get = f"r[{name!r}]"
        if kind == "datetime":
            args.append(f"None if {get} is None else _dt({get})")
        elif kind == "bytes":
            args.append(f"None if {get} is None else _b64({get}, validate=True)")
        else:
            args.append(get)
    code = ("def decode(r):\n    try:\n        return build(" + ", ".join(args) + ")\n"
            "    except (KeyError, TypeError, ValueError):\n        return None\n")
    namespace: dict[str, Any] = {"build": build, "_dt": datetime.fromisoformat, "_b64": base64.b64decode}
    exec(code, namespace)  # noqa: S102 - generated from the row's field names
    decode: Callable[[dict], Any] = namespace["decode"]
    return decode


_DECODERS = {name: _row_decoder(name, row_type) for name, row_type in TABLE_ROW_TYPES.items()}
_WIDTH = {name: len(kinds) for name, kinds in _KINDS.items()}


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
    """The batch as records of at most `bytes_max` bytes each, rows in order;
    each record is byte for byte `encode_batch` of its rows (a single row over
    the bound raises). A table's rows are encoded a chunk at a time, one
    `orjson.dumps` per chunk sized to the room left in the record: per-row
    calls cost ~2.5x as much (each allocates and copies a ~1 KiB bytes)."""
    head_bytes = len(_HEAD) + 1  # the closing "}"
    parts: list[bytes] = []
    size = head_bytes
    for name, rows in batch.by_table.items():
        key = b',"' + name.encode() + b'":'
        row_bytes_avg = 0.0  # learnt from this table's chunks
        i, n = 0, len(rows)
        while i < n:
            room = bytes_max - size - len(key)
            if row_bytes_avg == 0.0:
                row_bytes_avg = len(_dumps(rows[i])) + 1.0
            k = n - i  # the rest, if it may fit; else a chunk a little under the room
            if k * row_bytes_avg * CHUNK_FILL > room:
                k = max(1, int(room * CHUNK_FILL / row_bytes_avg))
            chunk = _dumps(rows[i:i + k])
            while len(chunk) > room and k > 1:
                k = max(1, int(k * room * CHUNK_FILL / len(chunk)))
                chunk = _dumps(rows[i:i + k])
            if len(chunk) > room:  # one row that does not fit here
                if parts:
                    yield b"".join(parts) + b"}"
                    parts, size = [], head_bytes
                    continue
                raise HistoryError(f"one {name} row encodes to {head_bytes + len(key) + len(chunk)} bytes, "
                                   f"over {bytes_max}")
            parts += [_HEAD if not parts else b"", key, chunk]
            size += len(key) + len(chunk)
            row_bytes_avg = len(chunk) / k
            i += k
            if i < n:  # the table goes on: one list per table in a record
                yield b"".join(parts) + b"}"
                parts, size = [], head_bytes
    if parts:
        yield b"".join(parts) + b"}"


def _dumps(value: object) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_NAIVE_UTC)


# A chunk aims a little under the room: rows vary in size, and an overshoot
# costs a second encoding of the chunk.
CHUNK_FILL = 0.95
_HEAD = b'{"v":' + str(WIRE_VERSION).encode()
