"""Avro binary bodies written and read by code generated once per schema.

fastavro walks the schema for every record (type dispatch per field, union
resolution by trial, a BytesIO per call); our schemas are flat records of a
few shapes, so `compile_codec` turns each into two straight-line functions at
import. The bytes and values are exactly fastavro's
(tests/codec/test_avro_fast.py compares them on generated records of every
schema); anything a generated function does not handle raises `Decline`, and
the caller (avro_codec) then runs fastavro on the same input, so odd values,
schema defaults and corrupt bodies keep fastavro's behaviour and errors.

Handled: records of string, bytes, int, long, boolean, timestamp-micros and
two-branch unions of null and one of those. A schema with anything else gets
no generated codec (None) and stays on fastavro.

Writing: an Avro long is a zig-zag varint, the same bytes as a protobuf
sint64, so a run of consecutive numbers (a string's length, union indices,
longs, timestamps) is written in one call as a packed repeated sint64 with
its 2-3 byte field header cut off: upb does the varints in C. Short runs are
written in Python (the message costs more than it saves there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# A run this long or longer goes through protobuf: a DeadLetter's run of 4
# numbers is ~25 % faster in Python, a BalanceUpdate's 20 ~2x faster in upb.
PACKED_RUN_MIN = 8

Decoder = Callable[[bytes, int], dict[str, Any]]
T = TypeVar("T")
Encoder = Callable[[dict[str, Any], bytes], bytes]


class Decline(Exception):
    """Input the generated code leaves to fastavro."""


# The zig-zag value of each one-byte varint.
ZIGZAG_BYTE = tuple((x >> 1) ^ -(x & 1) for x in range(128))


def long_rest(data: bytes, pos: int, first: int) -> tuple[int, int]:
    """The Avro long whose first byte `first` (continuation bit set) was read
    before `pos`, and the position after it. Written out to 8 bytes (a
    timestamp in micros takes 8): ~25 % faster than the loop alone."""
    n = first & 127
    x = data[pos]
    if x < 128:
        n |= x << 7
        return (n >> 1) ^ -(n & 1), pos + 1
    n |= (x & 127) << 7
    x = data[pos + 1]
    if x < 128:
        n |= x << 14
        return (n >> 1) ^ -(n & 1), pos + 2
    n |= (x & 127) << 14
    x = data[pos + 2]
    if x < 128:
        n |= x << 21
        return (n >> 1) ^ -(n & 1), pos + 3
    n |= (x & 127) << 21
    x = data[pos + 3]
    if x < 128:
        n |= x << 28
        return (n >> 1) ^ -(n & 1), pos + 4
    n |= (x & 127) << 28
    x = data[pos + 4]
    if x < 128:
        n |= x << 35
        return (n >> 1) ^ -(n & 1), pos + 5
    n |= (x & 127) << 35
    x = data[pos + 5]
    if x < 128:
        n |= x << 42
        return (n >> 1) ^ -(n & 1), pos + 6
    n |= (x & 127) << 42
    x = data[pos + 6]
    if x < 128:
        n |= x << 49
        return (n >> 1) ^ -(n & 1), pos + 7
    n |= (x & 127) << 49
    return _long_tail(data, pos + 7, n)


def _long_tail(data: bytes, pos: int, n: int) -> tuple[int, int]:
    """Bytes 9 and on of a long (`n` holds the first 8 bytes' 56 bits).
    fastavro reads into 64 bits: anything wider, or longer than 10 bytes,
    is declined."""
    shift = 56
    while True:
        x = data[pos]
        pos += 1
        n |= (x & 127) << shift
        if x < 128:
            if n >> 64:
                raise Decline("varint beyond 64 bits")
            return (n >> 1) ^ -(n & 1), pos
        shift += 7
        if shift > 63:
            raise Decline("varint longer than 10 bytes")


def length_rest(data: bytes, pos: int, first: int) -> tuple[int, int]:
    """A string or bytes length whose first byte is odd (negative) or has the
    continuation bit, and the position after it."""
    if first < 128:
        raise Decline("negative length")
    n, pos = long_rest(data, pos, first)
    if n < 0:
        raise Decline("negative length")
    return n, pos


# Zig-zag bytes of -64..63 (one varint byte each), at value + 64.
_SMALL = tuple(((v << 1) ^ (v >> 63)) for v in range(-64, 64))
_SMALL_BYTES = tuple(bytes((z,)) for z in _SMALL)


def varints_py(values: list[int]) -> bytes:
    """Zig-zag varints of `values` (Avro longs) in Python. (A float or other
    non-int fails the indexing or the shifts: declined, fastavro decides.)"""
    if len(values) == 1 and -64 <= values[0] < 64:  # a lone short length or index
        return _SMALL_BYTES[values[0] + 64]
    out = bytearray()
    for v in values:
        if -64 <= v < 64:
            out.append(_SMALL[v + 64])
            continue
        if not -(2**63) <= v < 2**63:
            raise Decline("long out of range")
        u = (v << 1) ^ (v >> 63)
        while u > 127:
            out.append((u & 127) | 128)
            u >>= 7
        out.append(u)
    return bytes(out)


def _packed_writer() -> Callable[[list[int]], bytes] | None:
    """protobuf's packed sint64 writer (public API only; its wheels carry the
    upb C core: the pure-Python fallback would be slower, never wrong)."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
        message_class = message_factory.GetMessageClass  # protobuf >= 4.22
    except (ImportError, AttributeError):
        return None
    proto = descriptor_pb2.FileDescriptorProto(name="compstream_avro_longs.proto",
                                               package="compstream_avro", syntax="proto3")
    message = proto.message_type.add(name="Longs")
    message.field.add(name="v", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_SINT64,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)  # packed in proto3
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    longs = message_class(pool.FindMessageTypeByName("compstream_avro.Longs"))

    def packed(values: list[int]) -> bytes:
        try:
            out: bytes = longs(v=values).SerializeToString()
        except (TypeError, ValueError) as exc:  # not an int, or out of int64
            raise Decline(str(exc)) from exc
        # Tag byte 0x0A, then the payload length as a varint: skip both.
        start = 2
        while out[start - 1] & 128:
            start += 1
        return out[start:]

    return packed


_PACKED = _packed_writer()


def varints(values: list[int]) -> bytes:
    """Zig-zag varints of `values`, fastest way available."""
    if _PACKED is None or len(values) < PACKED_RUN_MIN:
        return varints_py(values)
    return _PACKED(values)


# --- schema -> field kinds -------------------------------------------------

_PLAIN = {"string": "string", "bytes": "bytes", "int": "int", "long": "long", "boolean": "boolean"}


def _kind(avro_type: Any) -> str | None:
    if isinstance(avro_type, str):
        return _PLAIN.get(avro_type)
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "long" and avro_type.get("logicalType") == "timestamp-micros":
            return "timestamp"
        if set(avro_type) <= {"type"}:
            return _kind(avro_type["type"])
    return None


def field_kinds(schema: Any) -> list[tuple[str, str, int | None]] | None:
    """(name, kind, index of the null branch or None) per field, or None
    when the schema has something the generated code does not handle."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    out: list[tuple[str, str, int | None]] = []
    for field in schema.get("fields", ()):
        avro_type = field["type"]
        null_at: int | None = None
        if isinstance(avro_type, list):
            if len(avro_type) != 2 or "null" not in avro_type:
                return None
            null_at = avro_type.index("null")
            avro_type = avro_type[1 - null_at]
        kind = _kind(avro_type)
        if kind is None:
            return None
        out.append((field["name"], kind, null_at))
    return out


# --- code generation -------------------------------------------------------

def _read_long(var: str, indent: str) -> list[str]:
    return [f"{indent}x = b[p]; p += 1",
            f"{indent}if x > 127: {var}, p = _long(b, p, x)",
            f"{indent}else: {var} = _zz[x]"]


def _read_value(kind: str, var: str, indent: str) -> list[str]:
    if kind == "boolean":
        return [f"{indent}x = b[p]; p += 1",
                f"{indent}if x > 1: raise _Decline('boolean byte')",
                f"{indent}{var} = x == 1"]
    if kind in ("string", "bytes"):
        # An even byte under 128 is a length 0-63. No check that it fits: a
        # short slice leaves p past the end, so the next read or the final
        # `p != size` declines.
        tail = ".decode()" if kind == "string" else ""
        return [f"{indent}n = b[p]; p += 1",
                f"{indent}if n & 129: n, p = _length(b, p, n)",
                f"{indent}else: n >>= 1",
                f"{indent}e = p + n",
                f"{indent}{var} = b[p:e]{tail}; p = e"]
    lines = _read_long(var, indent)
    if kind == "int":
        lines.append(f"{indent}if not {INT_MIN} <= {var} <= {INT_MAX}: raise _Decline('int range')")
    elif kind == "timestamp":
        # fastavro's own conversion (read_timestamp_micros: epoch + timedelta), positional.
        lines.append(f"{indent}{var} = _EPOCH + _td(0, 0, {var})")
    return lines


def decoder_source(kinds: list[tuple[str, str, int | None]], emit: Sequence[str] | None = None) -> str:
    """`decode(b, p)` returning the record as a dict; with `emit` (field
    names), `_emit(<those fields' values>)` instead (None for a name the
    schema lacks): the caller's values straight from the locals."""
    lines = ["def decode(b, p):", "    size = len(b)"]
    for i, (_name, kind, null_at) in enumerate(kinds):
        var = f"f{i}"
        if null_at is None:
            lines += _read_value(kind, var, "    ")
        else:
            # Union index 0 / 1 is the zig-zag byte 0x00 / 0x02.
            lines += ["    x = b[p]; p += 1",
                      f"    if x == {2 * null_at}: {var} = None",
                      f"    elif x == {2 * (1 - null_at)}:"]
            lines += _read_value(kind, var, "        ")
            lines += ["    else: raise _Decline('union index')"]
    lines.append("    if p != size: raise _Decline('trailing bytes')")
    if emit is None:
        lines.append("    return {" + ", ".join(f"{name!r}: f{i}" for i, (name, _, _) in enumerate(kinds)) + "}")
    else:
        at = {name: i for i, (name, _, _) in enumerate(kinds)}
        lines.append("    return _emit(" + ", ".join(f"f{at[n]}" if n in at else "None" for n in emit) + ")")
    return "\n".join(lines) + "\n"


class _EncoderSource:
    """Writes the encoder's lines. Numbers (lengths, union indices, longs,
    times) gather into runs written by one `_varints` call: `pending` holds
    the expressions of the current run; once a union has made the run's
    contents depend on the data, they go into the list `run` instead."""

    def __init__(self) -> None:
        self.lines = ["def encode(r, header):", "    parts = [header]"]
        self.pending: list[str] = []
        self.dynamic = False

    def add(self, line: str, indent: str) -> None:
        self.lines.append(indent + line)

    def to_run(self, indent: str) -> None:
        if not self.dynamic:
            self.add("run = [" + ", ".join(self.pending) + "]", indent)
            self.dynamic = True
        elif self.pending:
            self.add("run += (" + ", ".join(self.pending) + ",)", indent)
        self.pending = []

    def flush(self, indent: str, last: str | None = None) -> None:
        """Write the run (plus `last`, another number) and start an empty one."""
        if last is not None:
            self.pending.append(last)
        if self.dynamic:
            self.to_run(indent)
            self.add("if run: parts.append(_varints(run)); run = []", indent)
        elif self.pending == ["n"]:
            self.add("parts.append(_byte[n] if n < 64 else _varints([n]))", indent)  # most lengths
        elif self.pending:
            self.add("parts.append(_varints([" + ", ".join(self.pending) + "]))", indent)
        self.pending = []

    def value(self, kind: str, var: str, indent: str) -> None:
        if kind == "long":
            self.pending.append(var)
        elif kind == "int":
            self.add(f"if not {INT_MIN} <= {var} <= {INT_MAX}: raise _Decline('int range')", indent)
            self.pending.append(var)
        elif kind == "timestamp":
            # fastavro's prepare_timestamp_micros for an aware datetime, exactly;
            # ints and subclasses go to fastavro, and so do naive datetimes
            # (local time there): subtracting the aware epoch raises TypeError.
            self.add(f"if type({var}) is not _datetime: raise _Decline('time')", indent)
            self.pending.append(f"({var} - _EPOCH) // _US")
        elif kind == "boolean":
            self.add(f"x = _bool[{var}] if type({var}) is bool else _decline()", indent)
            self.flush(indent)
            self.add("parts.append(x)", indent)
        else:  # string / bytes: the length ends the run of numbers
            conv = ".encode()" if kind == "string" else ""
            tp = "str" if kind == "string" else "bytes"
            self.add(f"if type({var}) is not {tp}: raise _Decline('{kind}')", indent)
            self.add(f"x = {var}{conv}; n = len(x)", indent)
            self.flush(indent, "n")
            self.add("parts.append(x)", indent)

    def field(self, i: int, name: str, kind: str, null_at: int | None) -> None:
        # A variable per field: a pending expression may name it fields later.
        var = f"r[{name!r}]" if kind == "long" and null_at is None else f"f{i}"
        if var != f"r[{name!r}]":
            self.add(f"{var} = r[{name!r}]", "    ")  # missing: fastavro applies the default
        if null_at is None:
            self.value(kind, var, "    ")
            return
        self.to_run("    ")
        self.add(f"if {var} is None: run.append({null_at})", "    ")
        self.add("else:", "    ")
        self.add(f"run.append({1 - null_at})", "        ")
        self.value(kind, var, "        ")
        self.to_run("        ")  # both branches leave the run in `run`

    def source(self) -> str:
        self.flush("    ")
        return "\n".join(self.lines + ["    return b''.join(parts)"]) + "\n"


def encoder_source(kinds: list[tuple[str, str, int | None]]) -> str:
    writer = _EncoderSource()
    for i, (name, kind, null_at) in enumerate(kinds):
        writer.field(i, name, kind, null_at)
    return writer.source()


def _decline() -> Any:
    raise Decline("value")


_NAMESPACE: dict[str, Any] = {
    "_long": long_rest, "_length": length_rest, "_zz": ZIGZAG_BYTE, "_Decline": Decline,
    "_EPOCH": EPOCH, "_td": timedelta,
    "_US": MICROSECOND, "_datetime": datetime, "_varints": varints, "_decline": _decline,
    "_byte": tuple(bytes((2 * n,)) for n in range(64)), "_bool": {False: b"\x00", True: b"\x01"},
}


def _compile(source: str, name: str) -> Any:
    namespace = dict(_NAMESPACE)
    exec(compile(source, f"<avro_fast {name}>", "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace[name]


def compile_emitting_decoder(schema: Any, emit: Callable[..., T],
                             names: Sequence[str]) -> Callable[[bytes, int], T] | None:
    """`decode(body, start) -> emit(*values of names)`: the decoder of
    `schema` handing its values to `emit` without a dict (None when the
    generated code does not handle the schema). Same Decline as the dict decoder."""
    kinds = field_kinds(schema)
    if kinds is None:
        return None
    namespace = dict(_NAMESPACE, _emit=emit)
    exec(compile(decoder_source(kinds, names), "<avro_fast decode_emit>", "exec"), namespace)  # noqa: S102
    decode: Callable[[bytes, int], T] = namespace["decode"]
    return decode


def compile_codec(schema: Any) -> tuple[Encoder, Decoder] | None:
    """(encode(record, header) -> bytes, decode(body, start) -> dict) for
    `schema`, or None when it has a type they do not handle."""
    kinds = field_kinds(schema)
    if kinds is None:
        return None
    encode: Encoder = _compile(encoder_source(kinds), "encode")
    decode: Decoder = _compile(decoder_source(kinds), "decode")
    return encode, decode
