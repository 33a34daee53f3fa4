"""Avro codec: single-object encoding of every record the project puts on Kafka.

Each message is `C3 01` + the 8-byte CRC-64-AVRO fingerprint of the writer
schema (little-endian, per the Avro spec) + the Avro binary body. A consumer
therefore always knows which schema wrote a message, several record types can
share a topic (grants and HR events do), and schemas can evolve.

The hot path runs code generated per schema at import (avro_fast: same bytes,
same values); fastavro handles whatever that code declines, so odd values,
defaults and corrupt bodies behave as before. fastavro was measured faster
than `avro` (docs/benchmarks.md); `avro` is kept for parsing/compatibility
checks in tests.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, cast

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from compstream.codec.avro_fast import Decoder, Encoder, compile_codec, compile_emitting_decoder
from compstream.codec.event_schemas import EVENT_RECORDS, check_event_schema
from compstream.domain.event_fast import POSITIONAL_BUILDERS, build_event
from compstream.domain.events import Event, EventError, event_from_dict

MAGIC = b"\xc3\x01"
HEADER_LENGTH = 10
# A usage event is ~200 bytes; anything this large is not ours.
MESSAGE_BYTES_MAX = 1_000_000

RECORD_BY_EVENT_TYPE = {v: k for k, v in EVENT_RECORDS.items()}


class DecodeError(ValueError):
    """Bytes that are not a message we can read; `stage` says which check failed."""

    def __init__(self, stage: str, reason: str):
        self.stage = stage
        self.reason = reason
        super().__init__(f"{stage}: {reason}")


@dataclass(frozen=True)
class SchemaEntry:
    name: str
    parsed: Any
    header: bytes
    canonical: str
    # Generated codec (avro_fast), None for a schema it does not handle.
    fast_encode: Encoder | None = None
    fast_decode: Decoder | None = None
    # An event schema's decoder straight to the event (no dict): what
    # build_event makes of fast_decode's dict, None where build_event would
    # decline (then decode_event takes the dict path for the result or error).
    fast_event: Callable[[bytes, int], Event | None] | None = None


def schema_dir() -> Path:
    override = os.environ.get("COMPSTREAM_SCHEMA_DIR")
    if override:
        return Path(override)
    # src/compstream/codec/avro_codec.py -> repository root / schemas
    return Path(__file__).resolve().parents[3] / "schemas"


def _load_registry() -> tuple[dict[str, SchemaEntry], dict[bytes, SchemaEntry]]:
    by_name: dict[str, SchemaEntry] = {}
    by_fingerprint: dict[bytes, SchemaEntry] = {}
    directory = schema_dir()
    paths = sorted(directory.glob("*.avsc"))
    if not paths:
        raise RuntimeError(f"no Avro schemas found in {directory}")
    for path in paths:
        raw = json.loads(path.read_text())
        try:
            check_event_schema(raw, str(path))
        except ValueError as exc:
            raise RuntimeError(str(exc)) from exc
        parsed = fastavro.parse_schema(raw)
        canonical = to_parsing_canonical_form(parsed)
        fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        name = raw["name"]
        fast = compile_codec(parsed)
        builder = POSITIONAL_BUILDERS.get(EVENT_RECORDS.get(name, ""))
        entry = SchemaEntry(name=name, parsed=parsed, header=MAGIC + fp, canonical=canonical,
                            fast_encode=fast[0] if fast else None, fast_decode=fast[1] if fast else None,
                            fast_event=None if builder is None else compile_emitting_decoder(parsed, builder[1],
                                                                                             builder[0]))
        if fp in by_fingerprint:
            raise RuntimeError(f"schema fingerprint collision: {path.name}")
        by_name[name] = entry
        by_fingerprint[fp] = entry
    return by_name, by_fingerprint


SCHEMAS, _BY_FINGERPRINT = _load_registry()


def _entry(name: str) -> SchemaEntry:
    entry = SCHEMAS.get(name)
    if entry is None:
        raise KeyError(f"unknown record schema {name!r}")
    return entry


def encode_record(name: str, record: dict) -> bytes:
    entry = _entry(name)
    fast = entry.fast_encode
    if fast is not None:
        try:
            return fast(record, entry.header)
        except Exception:  # noqa: S110 - declined (odd value, missing field): fastavro decides
            pass
    return _write_fastavro(entry, record)


def encode_record_fastavro(name: str, record: dict) -> bytes:
    """encode_record through fastavro only: the reference the generated
    encoders are tested and measured against."""
    return _write_fastavro(_entry(name), record)


def _write_fastavro(entry: SchemaEntry, record: dict) -> bytes:
    buffer = io.BytesIO()
    buffer.write(entry.header)
    fastavro.schemaless_writer(buffer, entry.parsed, record)
    return buffer.getvalue()


def decode_record(data: bytes) -> tuple[str, dict]:
    """Bytes -> (record name, dict). Raises DecodeError, never anything else."""
    data, entry = _framed(data)
    fast = entry.fast_decode
    if fast is not None:
        try:
            return entry.name, fast(data, HEADER_LENGTH)
        except Exception:  # noqa: S110 - declined or corrupt: fastavro reads it and names the error
            pass
    return entry.name, _read_fastavro(entry, data)


def decode_record_fastavro(data: bytes) -> tuple[str, dict]:
    """decode_record through fastavro only (the reference, as encode_record_fastavro)."""
    data, entry = _framed(data)
    return entry.name, _read_fastavro(entry, data)


def _framed(data: bytes) -> tuple[bytes, SchemaEntry]:
    """The message as bytes and its writer schema, after the framing checks."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("framing", f"expected bytes, got {type(data).__name__}")
    if type(data) is not bytes:
        data = bytes(data)  # slices of a bytearray or memoryview are not bytes
    if len(data) > MESSAGE_BYTES_MAX:
        raise DecodeError("framing", f"message of {len(data)} bytes exceeds {MESSAGE_BYTES_MAX}")
    if len(data) < HEADER_LENGTH or data[:2] != MAGIC:
        raise DecodeError("framing", "not Avro single-object encoding (bad magic)")
    entry = _BY_FINGERPRINT.get(data[2:HEADER_LENGTH])
    if entry is None:
        raise DecodeError("schema", f"unknown writer schema fingerprint {data[2:10].hex()}")
    return data, entry


def _read_fastavro(entry: SchemaEntry, data: bytes) -> dict[str, Any]:
    stream = io.BytesIO(data[HEADER_LENGTH:])
    try:
        record = fastavro.schemaless_reader(stream, entry.parsed, None)
    except Exception as exc:  # fastavro raises many types on corrupt bodies
        raise DecodeError("body", f"corrupt {entry.name} body: {exc!r}") from exc
    if stream.tell() != len(data) - HEADER_LENGTH:
        raise DecodeError("body", f"{entry.name} body has trailing bytes")
    return cast(dict[str, Any], record)  # every writer schema is a record


def encode_event(event: Event) -> bytes:
    record = {
        name: getattr(event, name)
        for name in event.__dataclass_fields__
        if name != "type"
    }
    return encode_record(RECORD_BY_EVENT_TYPE[event.type], record)


def decode_event(data: bytes) -> Event:
    """Bytes -> validated canonical event. Raises DecodeError (bad bytes) or
    EventError (well-formed Avro, invalid content, e.g. a negative amount)."""
    body, entry = _framed(data)
    fast = entry.fast_event
    if fast is not None:
        try:
            event = fast(body, HEADER_LENGTH)
        except Exception:  # noqa: S110 - declined or corrupt: the path below reads it and names the error
            event = None
        if event is not None:
            return event
    name, record = decode_record(body)
    event_type = EVENT_RECORDS.get(name)
    if event_type is None:
        raise DecodeError("schema", f"{name} is not an event record")
    record["type"] = event_type
    # Avro already typed the fields (strings, longs, UTC datetimes): the fast
    # builder checks the rest; anything it declines gets the full validation.
    event = build_event(record)
    return event if event is not None else event_from_dict(record)


def json_default(value: Any) -> Any:
    """For json.dumps of decoded records (datetimes, bytes)."""
    if isinstance(value, datetime):
        from compstream.domain.events import format_time

        return format_time(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


__all__ = [
    "DecodeError",
    "EventError",
    "SCHEMAS",
    "decode_event",
    "decode_record",
    "encode_event",
    "encode_record",
    "json_default",
]
