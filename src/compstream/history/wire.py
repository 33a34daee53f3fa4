"""History rows on the history topic: one JSON document per record.

Workers publish their history rows to a Kafka topic inside the batch's
transaction; `compstream sink` (or ClickHouse's Kafka engine, or a Kafka
Connect sink) loads them. A record holds rows of one source partition,
each table's column names once and its rows as arrays (version 2):

    {"v": 2, "events": {"columns": ["type", ...], "rows": [["usage", ...], ...]},
     "postings": {...}, ...}

Columns are the table columns (rows.py) in their order; times are ISO 8601
UTC, `raw` bytes of dead letters base64. Version 1 records (each row an
object of its columns) are still read: a topic may hold them from an older
worker. Records stay under RECORD_BYTES_MAX: the broker's default
message.max.bytes is 1 MiB.
"""

from __future__ import annotations

import base64
import dataclasses
import operator
from datetime import datetime
from typing import Any, Callable, Iterator

import orjson

from compstream.domain.twin import fast_constructor
from compstream.history.rows import TABLE_ROW_TYPES, HistoryBatch, HistoryError

WIRE_VERSION = 2
WIRE_VERSIONS_READ = (1, 2)
RECORD_BYTES_MAX = 512 * 1024


def _field_kinds(row_type: type) -> tuple[tuple[str, str], ...]:
    kinds = []
    for f in dataclasses.fields(row_type):
        text = str(f.type)
        kind = "datetime" if "datetime" in text else "bytes" if text.startswith("bytes") else "plain"
        kinds.append((f.name, kind))
    return tuple(kinds)


_KINDS = {name: _field_kinds(row_type) for name, row_type in TABLE_ROW_TYPES.items()}
_COLUMNS = {name: tuple(column for column, _ in kinds) for name, kinds in _KINDS.items()}


def _values_of(columns: tuple[str, ...]) -> Callable[[Any], tuple]:
    """A row as the tuple of its columns, in order: what the record's arrays
    hold (attrgetter of one name returns the bare value, not a 1-tuple)."""
    get = operator.attrgetter(*columns)
    if len(columns) == 1:
        return lambda row: (get(row),)
    return get


_VALUES = {name: _values_of(columns) for name, columns in _COLUMNS.items()}


def _default(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_batch(batch: HistoryBatch) -> bytes:
    """The whole batch as one record (the definition `encode_records` cuts
    into records of a bounded size, byte for byte)."""
    doc: dict = {"v": WIRE_VERSION}
    for name, rows in batch.by_table.items():
        if rows:
            values = _VALUES[name]
            doc[name] = {"columns": _COLUMNS[name], "rows": [values(r) for r in rows]}
    return _dumps(doc)


def decode_batch(data: bytes) -> HistoryBatch:
    """Raises HistoryError with the reason on anything that is not a record of
    a version this build reads (a poison record must be named, never half
    loaded)."""
    try:
        doc, version = _versioned(data)
        tables = {}
        for name, table in doc.items():
            if name == "v":
                continue
            if name not in TABLE_ROW_TYPES:
                raise HistoryError(f"unknown history table {name!r}")
            tables[name] = _table_v2(name, table) if version == 2 else _table_v1(name, table)
        return HistoryBatch(**tables)
    except HistoryError:
        raise
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise HistoryError(f"bad history record: {type(exc).__name__}: {exc}") from exc


def _versioned(data: bytes) -> tuple[dict, int]:
    """The record's document and its version, one this build reads."""
    doc = orjson.loads(data)
    version = doc.get("v") if isinstance(doc, dict) else None
    if version not in WIRE_VERSIONS_READ:
        raise HistoryError(f"not a history record of version {' or '.join(map(str, WIRE_VERSIONS_READ))}")
    return doc, version


def _table_v2(name: str, table: object) -> tuple:
    if not isinstance(table, dict) or not isinstance(table.get("rows"), list) \
            or not isinstance(table.get("columns"), list) or len(table) != 2:
        raise HistoryError(f"history table {name!r} is not an object of columns and rows")
    columns, raw_rows = tuple(table["columns"]), table["rows"]
    row_type, width = TABLE_ROW_TYPES[name], len(columns)
    # This build's columns: positionally. Another build's (one that added or
    # lacks a column with a default), or a row the fast path refuses: by
    # name, through the row class's own checks.
    fast = _DECODERS[name] if columns == _COLUMNS[name] else None
    rows = []
    for r in raw_rows:
        row = fast(r) if fast is not None and isinstance(r, list) and len(r) == width else None
        rows.append(row if row is not None else row_type(**_decoded(name, _named(columns, r))))
    return tuple(rows)


def _named(columns: tuple, values: object) -> dict:
    if not isinstance(values, list) or len(values) != len(columns):
        raise HistoryError(f"a history row of {len(values) if isinstance(values, list) else 'no'} values "
                           f"for {len(columns)} columns")
    return dict(zip(columns, values, strict=True))


def _table_v1(name: str, raw_rows: object) -> tuple:
    if not isinstance(raw_rows, list):
        raise HistoryError(f"history table {name!r} is not a list of rows")
    row_type = TABLE_ROW_TYPES[name]
    return tuple(row_type(**_decoded(name, r)) for r in raw_rows)


def _row_decoder(table: str, row_type: type) -> Callable[[list], Any]:
    """A function building `table`'s row from a decoded array of its columns
    in order (positional, through domain/twin's constructor where the class
    allows it): the loader decodes every row, and `row_type(**...)` with a
    dict cost ~16 µs an event row. Returns None for an array it cannot take
    as is (a bad value): the general path then decides, with its error."""
    try:
        build: Callable[..., Any] = fast_constructor(row_type)
    except TypeError:  # not a slotted dataclass: its own __init__, positionally
        build = row_type
    args = []
    for i, (_, kind) in enumerate(_KINDS[table]):
        get = f"r[{i}]"
        if kind == "datetime":
            args.append(f"None if {get} is None else _dt({get})")
        elif kind == "bytes":
            args.append(f"None if {get} is None else _b64({get}, validate=True)")
        else:
            args.append(get)
    code = ("def decode(r):\n    try:\n        return build(" + ", ".join(args) + ")\n"
            "    except (TypeError, ValueError):\n        return None\n")
    namespace: dict[str, Any] = {"build": build, "_dt": datetime.fromisoformat, "_b64": base64.b64decode}
    exec(code, namespace)  # noqa: S102 - generated from the row's field names
    decode: Callable[[list], Any] = namespace["decode"]
    return decode


_DECODERS = {name: _row_decoder(name, row_type) for name, row_type in TABLE_ROW_TYPES.items()}


def _decoded(table: str, raw: object) -> dict:
    if not isinstance(raw, dict):
        raise HistoryError(f"a {table} row is not an object of its columns")
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


# engineer, event id, late, applied watermark, applied seq
DecisionRow = tuple[str, str, bool, "datetime | None", "int | None"]
_DECISION_COLUMNS = ("engineer_id", "event_id", "late", "applied_watermark", "applied_seq")


def _event_columns(data: bytes, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The named columns of each event row of a record (None where a column
    is absent), without building rows."""
    doc, version = _versioned(data)
    table = doc.get("events")
    if table is None:
        return []
    if version == 2:
        if not isinstance(table, dict) or not isinstance(table.get("columns"), list) \
                or not isinstance(table.get("rows"), list):
            raise HistoryError("history table 'events' is not an object of columns and rows")
        columns = table["columns"]
        at = [columns.index(c) if c in columns else None for c in names]
        return [tuple(r[i] if i is not None else None for i in at) for r in table["rows"]]
    return [tuple(r.get(c) for c in names) for r in table]


def decision_rows(data: bytes) -> list[DecisionRow]:
    """Of each event row of a record: whether it was applied late and under
    which watermark, without building rows (`compstream diff` reads the whole
    history topic for them). Raises HistoryError like decode_batch on a
    record it cannot read."""
    try:
        found = _event_columns(data, _DECISION_COLUMNS)
        out: list[DecisionRow] = []
        for engineer, event_id, late, watermark, seq in found:
            if not isinstance(engineer, str) or not isinstance(event_id, str) or late not in (True, False, None) \
                    or not (seq is None or type(seq) is int):
                raise HistoryError(f"an event row with engineer {engineer!r}, event {event_id!r}, late {late!r}, "
                                   f"seq {seq!r}")
            out.append((engineer, event_id, late is True,
                        None if watermark is None else datetime.fromisoformat(watermark), seq))
        return out
    except HistoryError:
        raise
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise HistoryError(f"bad history record: {type(exc).__name__}: {exc}") from exc


# engineer, event id, type, event time, source topic, partition, offset, late, applied watermark, applied seq
PlaceRow = tuple[str, str, str, datetime, str, int, int, bool, "datetime | None", "int | None"]
_PLACE_COLUMNS = ("engineer_id", "event_id", "type", "event_time", "kafka_topic", "kafka_partition", "kafka_offset",
                  "late", "applied_watermark", "applied_seq")


def place_rows(data: bytes) -> list[PlaceRow]:
    """Of each event row of a record: where the event was read (source topic,
    partition, offset), its time and the stream's decision on it; what a
    rebuild needs to decide as the stream did (worker/recorded_late.py)."""
    try:
        out: list[PlaceRow] = []
        found = _event_columns(data, _PLACE_COLUMNS)
        for engineer, event_id, kind, at, topic, p, offset, late, watermark, seq in found:
            if not all(isinstance(v, str) for v in (engineer, event_id, kind, at, topic)) \
                    or type(p) is not int or type(offset) is not int or late not in (True, False, None) \
                    or not (seq is None or type(seq) is int):
                raise HistoryError(f"an event row with engineer {engineer!r}, event {event_id!r}, type {kind!r}, "
                                   f"at {topic!r}[{p!r}]@{offset!r}")
            out.append((engineer, event_id, kind, datetime.fromisoformat(at), topic, p, offset, late is True,
                        None if watermark is None else datetime.fromisoformat(watermark), seq))
        return out
    except HistoryError:
        raise
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise HistoryError(f"bad history record: {type(exc).__name__}: {exc}") from exc


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
        if not rows:
            continue
        values = _VALUES[name]
        key = _TABLE_HEAD[name]
        row_bytes_avg = 0.0  # learnt from this table's chunks
        i, n = 0, len(rows)
        while i < n:
            room = bytes_max - size - len(key) - 1  # the table's closing "}"
            if row_bytes_avg == 0.0:
                row_bytes_avg = len(_dumps(values(rows[i]))) + 1.0
            k = n - i  # the rest, if it may fit; else a chunk a little under the room
            if k * row_bytes_avg * CHUNK_FILL > room:
                k = max(1, int(room * CHUNK_FILL / row_bytes_avg))
            chunk = _dumps([values(r) for r in rows[i:i + k]])
            while len(chunk) > room and k > 1:
                k = max(1, int(k * room * CHUNK_FILL / len(chunk)))
                chunk = _dumps([values(r) for r in rows[i:i + k]])
            if len(chunk) > room:  # one row that does not fit here
                if parts:
                    yield b"".join(parts) + b"}"
                    parts, size = [], head_bytes
                    continue
                raise HistoryError(f"one {name} row encodes to {head_bytes + len(key) + 1 + len(chunk)} bytes, "
                                   f"over {bytes_max}")
            parts += [_HEAD if not parts else b"", key, chunk, b"}"]
            size += len(key) + len(chunk) + 1
            row_bytes_avg = len(chunk) / k
            i += k
            if i < n:  # the table goes on: one object per table in a record
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
# What opens a table in a record: its key, its columns, the rows' array.
_TABLE_HEAD = {name: b',"' + name.encode() + b'":{"columns":' + _dumps(columns) + b',"rows":'
               for name, columns in _COLUMNS.items()}
