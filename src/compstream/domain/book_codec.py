"""Compact bytes for an EngineerBook (the Faust table value) and the seen-id set.

Layout: b"CB" | version (1 byte) | JSON length (4 bytes, big endian) | JSON | seen
records. The JSON is an array of the book's fields in STATE_FIELDS order
(version 3; version 2 wrote an object with those keys, 3 % more bytes a book;
both are read, and earlier builds cannot read version 3: docs/runbook.md 8a).
Times inside are integer microseconds since the Unix epoch. The seen
set is a sorted run of 16-byte records: blake2b-8(event_id) || the first 6 bytes
of blake2b-8(payload fingerprint) || day (2 bytes, big endian: the event's day
since the epoch, or KEEP_DAY), so deserializing it is a single copy and lookups
are a binary search (no per-id Python objects). The day lets the book forget usage ids
older than its dedupe horizon (book.SEEN_USAGE_DAYS), which bounds its size.
Version 1 books (8-byte fingerprints, no days) are read with every record kept.
Version 4 (a book with sealed days, SeenIds): version 3's layout with the
length of the unsealed records (4 bytes) after the JSON, then those records,
then the sealed ones (each run sorted). `split_sealed` / `join_sealed` turn it
into a version 3 book plus its sealed records and back, without parsing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import sys
from array import array
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import orjson

from compstream.domain.events import (
    EVENT_FIELDS,
    EngineerOffboarded,
    Event,
    GrantIssued,
    GrantRevoked,
    LateAt,
    Usage,
    format_time,
)

MAGIC = b"CB"
VERSION = 3
_V4 = 4  # version 3 with sealed ids after the others (SeenIds.sealed): written only by books that have some
_V2 = 2  # the state as a JSON object (read only)
_V1 = 1  # and 8-byte fingerprints, no days (read only)
# The book state's fields, in the order version 3 writes them.
STATE_FIELDS = ("e", "w", "th", "f", "o", "s", "h", "c", "l", "x", "p", "n", "sd")
_HEADER = struct.Struct(">2sBI")
_OPEN_LENGTH = struct.Struct(">I")  # version 4: the bytes of the unsealed ids
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
RECORD = 16
FINGERPRINT_BYTES = 6  # a conflicting payload passes for a duplicate with odds 2**-48
_DAY_OF_RECORD = struct.Struct(">14xH")  # the day field of one record
KEEP_DAY = 0xFFFF  # a record never forgotten (HR events; ids read from version 1); days end in 2149


class BookCodecError(ValueError):
    pass


def to_us(t: datetime) -> int:
    return (t - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


_EPOCH_ORDINAL = EPOCH.toordinal()
_DAY_US = 86_400_000_000


def day_of(t: datetime) -> int:
    """Days since the epoch of an aware time (`to_us(t) // one day`; for a
    UTC time its date's ordinal, ~5x cheaper: hot, once per ingest)."""
    if t.tzinfo is timezone.utc:
        return t.toordinal() - _EPOCH_ORDINAL
    return to_us(t) // _DAY_US


def id_digest(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest()


# Hot path (every ingest): the same text as `payload_fingerprint` (canonical
# JSON: sorted keys, compact separators, ASCII escapes, RFC 3339 times),
# without rebuilding a JSONEncoder and walking dataclasses.fields() per event.
# Must stay byte-equal to payload_fingerprint: stored seen-sets hold digests
# of that text (tests/domain/test_event_fast.py checks it on every event type).
_FP_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_FP_FIELDS: dict[type, tuple[str, ...]] = {}
_SORT_KEYS = orjson.OPT_SORT_KEYS


def fingerprint_text(event: Event) -> str:
    fast = _FP_FAST.get(type(event))
    if fast is not None:
        text = fast(event)
        if text is not None:
            return text
    return _fingerprint_text(event)


def _fingerprint_text(event: Event) -> str:
    cls = type(event)
    names = _FP_FIELDS.get(cls)
    if names is None:
        names = _FP_FIELDS[cls] = tuple(f.name for f in dataclasses.fields(event) if f.name != "type")
    out = {"type": event.type}
    plain = True  # only str/int/bool/None: there orjson and json agree
    for name in names:
        value = getattr(event, name)
        tp = type(value)
        if tp is str or tp is int or value is None:
            pass
        elif isinstance(value, datetime):
            value = format_time(value)
        elif tp is not bool:
            plain = False  # e.g. a float in a hand-built event: orjson prints it differently
        out[name] = value
    if plain:
        try:
            data = orjson.dumps(out, option=_SORT_KEYS)
        except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits: json below
            data = None
        # orjson writes non-ASCII and DEL raw where json escapes them; with
        # neither (and no escape at all) both produce the same bytes.
        if data is not None and data.isascii() and b"\\" not in data and b"\x7f" not in data:
            return data.decode("ascii")
    return _FP_ENCODER.encode(out)


def _fp_fast(cls: type) -> Callable[[Event], str | None]:
    """`fingerprint_text` for events of `cls` whose every field has its
    declared type (what the decoders build), generated from the event's
    fields: one dict display instead of a loop over the names with a type
    test each. Returns None for anything else (a hand-built event with a
    float, a datetime subclass, ...) or text orjson would write differently
    from json; the caller then takes the general path."""
    names = tuple(f.name for f in dataclasses.fields(cls) if f.name != "type")
    specs = {s.name: s for s in EVENT_FIELDS[cls]}
    if set(names) != set(specs):
        raise TypeError(f"{cls.__name__}: fields {names} are not its specs {sorted(specs)}")
    tests, items = [], [("type", "e.type")]
    for i, name in enumerate(names):
        kind = specs[name].kind
        if kind is datetime:
            # orjson writes a UTC time as format_time does unless its fraction
            # is zero (it leaves that out) or its year is before 1000.
            tests.append(f"(v{i} is None or (type(v{i}) is _datetime and v{i}.tzinfo is _UTC"
                         f" and v{i}.microsecond and v{i}.year >= 1000))")
        else:
            tests.append(f"(type(v{i}) is _{kind.__name__} or v{i} is None)")
        items.append((name, f"v{i}"))
    # The display in sorted key order (as str sorts them, which is how
    # OPT_SORT_KEYS and json's sort_keys order them): orjson need not sort.
    display = ", ".join(f"{name!r}: {value}" for name, value in sorted(items))
    src = (f"def fp(e):\n    {', '.join(f'v{i}' for i in range(len(names)))}, = "
           f"{', '.join(f'e.{n}' for n in names)},\n"
           f"    if not ({' and '.join(tests)}):\n        return None\n"
           f"    try:\n        data = _dumps({{{display}}}, option=_OPTIONS)\n"
           f"    except _EncodeError:\n        return None\n"
           f"    if data.isascii() and b'\\\\' not in data and b'\\x7f' not in data:\n"
           f"        return data.decode('ascii')\n"
           f"    return None\n")
    namespace: dict[str, Any] = {"_str": str, "_int": int, "_bool": bool, "_datetime": datetime,
                                 "_UTC": timezone.utc, "_dumps": orjson.dumps,
                                 "_OPTIONS": orjson.OPT_UTC_Z, "_EncodeError": orjson.JSONEncodeError}
    exec(src, namespace)  # noqa: S102 - generated from the event's field names above
    fp: Callable[[Event], str | None] = namespace["fp"]
    return fp


_FP_FAST: dict[type, Callable[[Event], str | None]] = {cls: _fp_fast(cls) for cls in EVENT_FIELDS}


def fingerprint_digest(event: Event, text: str | None = None) -> bytes:
    """Digest of `fingerprint_text(event)` (FINGERPRINT_BYTES of a blake2b-8, as
    version 1 stored it whole); pass `text` when already computed."""
    if text is None:
        text = fingerprint_text(event)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()[:FINGERPRINT_BYTES]


class SeenIds:
    """Sorted 16-byte records (id digest, fingerprint digest, day); 16 bytes
    per remembered event.

    Two sorted runs: `blob`, and `sealed`, the records of *sealed* days. A
    day is sealed (`seal_before`) once it is behind the watermark's day and
    holds at least a segment's worth of ids: a busy book's past days then go
    to the changelog as records of their own, each written once, instead of
    inside every record of the book (worker/book_changelog.py). A book with
    nothing sealed has an empty `sealed` and works as one run."""

    __slots__ = ("blob", "floor", "sealed", "sealed_days", "changed_days", "sealed_stop", "changed_buckets")

    def __init__(self, blob: bytes | bytearray = b"", sealed: bytes | bytearray = b""):
        if len(blob) % RECORD or len(sealed) % RECORD:
            raise BookCodecError("seen-id blob is not a whole number of records")
        self.blob = bytearray(blob)
        # No record's day is below this (0: not known yet). A book calls
        # forget_before once a day of its watermark, usually with nothing that
        # old: the floor answers that without scanning every record's day.
        self.floor = 0
        self.sealed = bytearray(sealed)
        self.sealed_days: set[int] = set(record_days(self.sealed)) if sealed else set()
        if KEEP_DAY in self.sealed_days:
            raise BookCodecError("a sealed seen-id record is filed under KEEP_DAY")
        # Sealed days whose records changed (sealed, or a late id added)
        # since the last take_changed_days(): their changelog records are due.
        self.changed_days: set[int] = set()
        # First bytes of the id digests added to `blob` since
        # take_changed_buckets() (None: not known -- not tracked before the
        # first call, or after a removal): a large book's changelog rewrites
        # only the parts of its ids those fall in (worker/book_parts.py).
        self.changed_buckets: set[int] | None = None
        self.sealed_stop = 0  # the last seal_before's day_stop: nothing to do below it

    @classmethod
    def from_v1(cls, blob: bytes) -> "SeenIds":
        """16-byte records of a version 1 book: kept forever (their days are unknown)."""
        if len(blob) % RECORD:
            raise BookCodecError("seen-id blob is not a whole number of records")
        keep = KEEP_DAY.to_bytes(2, "big")
        return cls(b"".join(blob[at:at + 8 + FINGERPRINT_BYTES] + keep for at in range(0, len(blob), RECORD)))

    def __len__(self) -> int:
        return (len(self.blob) + len(self.sealed)) // RECORD

    def _find(self, idd: bytes) -> int:
        return _find(self.blob, idd)

    def get(self, idd: bytes) -> bytes | None:
        return self.lookup(idd)[1]

    def lookup(self, idd: bytes) -> tuple[int, bytes | None]:
        """(where `idd` is or would go in `blob`, its fingerprint digest or
        None): one search for a `get` followed by an `insert` (ingest's case)."""
        blob = self.blob
        i = _find(blob, idd)
        at = i * RECORD
        if at < len(blob) and blob[at:at + 8] == idd:
            return i, bytes(blob[at + 8:at + 8 + FINGERPRINT_BYTES])
        sealed = self.sealed
        if sealed:
            at = _find(sealed, idd) * RECORD
            if at < len(sealed) and sealed[at:at + 8] == idd:
                return i, bytes(sealed[at + 8:at + 8 + FINGERPRINT_BYTES])
        return i, None

    def add(self, idd: bytes, fpd: bytes, day: int = KEEP_DAY) -> None:
        self.insert(self._find(idd), idd, fpd, day)

    def insert(self, i: int, idd: bytes, fpd: bytes, day: int = KEEP_DAY) -> None:
        """Add a record at index `i` of `blob`, which `lookup(idd)` returned
        with no change to the set since (a sealed day's record goes to its run)."""
        if len(idd) != 8 or len(fpd) != FINGERPRINT_BYTES:
            raise BookCodecError(f"digests must be 8 and {FINGERPRINT_BYTES} bytes")
        if not 0 <= day <= KEEP_DAY:
            raise BookCodecError(f"day {day} out of range")
        record = idd + fpd + day.to_bytes(2, "big")
        if self.sealed_days and day in self.sealed_days:  # a late id of a sealed day
            at = _find(self.sealed, idd) * RECORD
            self.sealed[at:at] = record
            self.changed_days.add(day)
        else:
            at = i * RECORD
            self.blob[at:at] = record
            buckets = self.changed_buckets
            if buckets is not None:
                buckets.add(idd[0])
        if day < self.floor:
            self.floor = day

    def usage_day_counts(self) -> dict[int, int]:
        """Records per day, KEEP_DAY ones left out."""
        counts: dict[int, int] = {}
        for blob in (self.blob, self.sealed):
            for (day,) in _DAY_OF_RECORD.iter_unpack(blob):
                if day != KEEP_DAY:
                    counts[day] = counts.get(day, 0) + 1
        return counts

    def forget_before(self, day_min: int) -> int:
        """Drop the records whose day is before `day_min`; returns how many."""
        if self.floor >= day_min:
            return 0  # the usual case (once a day per book): nothing that old, known without a scan
        dropped = 0
        oldest = KEEP_DAY
        for name in ("blob", "sealed"):
            blob = getattr(self, name)
            days = record_days(blob)
            if not days or min(days) >= day_min:
                oldest = min(oldest, min(days)) if days else oldest
                continue
            kept = bytearray(b"".join(
                blob[i * RECORD:(i + 1) * RECORD] for i, day in enumerate(days) if day >= day_min))
            dropped += len(days) - len(kept) // RECORD
            setattr(self, name, kept)
        if not dropped:
            self.floor = oldest
            return 0
        self.sealed_days = {d for d in self.sealed_days if d >= day_min}
        self.changed_days = {d for d in self.changed_days if d >= day_min}
        self.changed_buckets = None
        self.floor = day_min
        return dropped

    def seal_before(self, day_stop: int, records_min: int) -> set[int]:
        """Move the records of every day before `day_stop` that holds at
        least `records_min` of them from `blob` to `sealed`; returns the
        days sealed now. A caller passes its watermark's day: those days
        change afterwards only by a late id (rare) or by being forgotten."""
        if day_stop <= self.sealed_stop:
            return set()
        self.sealed_stop = day_stop
        blob = self.blob
        if len(blob) < records_min * RECORD:
            return set()
        days = record_days(blob)
        counts = Counter(days)
        chosen = {d for d, n in counts.items() if d < day_stop and n >= records_min and d != KEEP_DAY}
        if not chosen:
            return set()
        keep: list[bytes | bytearray] = []
        move: list[bytes | bytearray] = []
        for i, day in enumerate(days):
            (move if day in chosen else keep).append(blob[i * RECORD:(i + 1) * RECORD])
        sealed = self.sealed
        move.extend(sealed[at:at + RECORD] for at in range(0, len(sealed), RECORD))
        move.sort()
        self.blob = bytearray(b"".join(keep))
        self.changed_buckets = None
        self.sealed = bytearray(b"".join(move))
        self.sealed_days |= chosen
        self.changed_days |= chosen
        return chosen

    def take_changed_buckets(self) -> set[int] | None:
        """The first digest bytes of the ids added to `blob` since the last
        call (None: anything may have changed). Tracking starts with the
        first call."""
        changed, self.changed_buckets = self.changed_buckets, set()
        return changed

    def take_changed_days(self) -> set[int]:
        """The sealed days changed since the last call (and forget them)."""
        changed, self.changed_days = self.changed_days, set()
        return changed


def _find(blob: bytes | bytearray, idd: bytes) -> int:
    """Index of the first 16-byte record of sorted `blob` whose id is >= idd."""
    lo, hi = 0, len(blob) // RECORD
    while lo < hi:
        mid = (lo + hi) >> 1
        at = mid * RECORD
        if blob[at:at + 8] < idd:
            lo = mid + 1
        else:
            hi = mid
    return lo


def record_days(blob: bytes | bytearray) -> array[int]:
    """Each record's day, in record order (C loops: no object per record)."""
    shorts = array("H", blob)
    if sys.byteorder == "little":
        shorts.byteswap()  # the days are big endian
    return shorts[RECORD // 2 - 1::RECORD // 2]


def records_of_days(blob: bytes | bytearray, days: set[int]) -> dict[int, bytes]:
    """The records of each of `days` in sorted `blob`, in order (a pass over
    every record: for the sealed days whose changelog records are due)."""
    out: dict[int, list[bytes | bytearray]] = {d: [] for d in days}
    for i, day in enumerate(record_days(blob)):
        part = out.get(day)
        if part is not None:
            part.append(blob[i * RECORD:(i + 1) * RECORD])
    return {d: b"".join(parts) for d, parts in out.items()}


def event_to_compact(e: Event | LateAt) -> list[Any]:
    tp = type(e)
    if isinstance(e, Usage):
        return ["u", e.event_id, e.provider, e.model, to_us(e.occurred_at), e.input_tokens,
                e.output_tokens, e.cache_read_tokens, e.cache_write_tokens, e.cost_nanos,
                e.unpriced_reason, e.price_version, e.corrects_event_id]
    if isinstance(e, GrantIssued):
        return ["g", e.event_id, e.grant_id, e.amount_nanos, to_us(e.effective_at),
                None if e.expires_at is None else to_us(e.expires_at), e.kind]
    if isinstance(e, GrantRevoked):
        return ["r", e.event_id, e.grant_id, to_us(e.effective_at)]
    if isinstance(e, EngineerOffboarded):
        return ["o", e.event_id, to_us(e.effective_at)]
    if isinstance(e, LateAt):  # a recorded late decision waiting at its watermark
        return ["L", to_us(e.watermark), e.order, event_to_compact(e.event)]
    raise BookCodecError(f"not an event: {tp.__name__}")


def event_from_compact(engineer_id: str, c: list[Any]) -> Event | LateAt:
    tag = c[0]
    if tag == "u":
        return Usage(c[1], engineer_id, c[2], c[3], from_us(c[4]), c[5], c[6], c[7], c[8], c[9],
                     c[10], c[11], c[12])
    if tag == "g":
        return GrantIssued(c[1], engineer_id, c[2], c[3], from_us(c[4]),
                           None if c[5] is None else from_us(c[5]), c[6])
    if tag == "r":
        return GrantRevoked(c[1], engineer_id, c[2], from_us(c[3]))
    if tag == "o":
        return EngineerOffboarded(c[1], engineer_id, from_us(c[2]))
    if tag == "L":
        inner = event_from_compact(engineer_id, c[3])
        if isinstance(inner, LateAt) or type(c[2]) is not int:
            raise BookCodecError(f"bad late decision {c!r}")
        return LateAt(inner, from_us(c[1]), c[2])  # type: ignore[arg-type]
    raise BookCodecError(f"unknown compact event tag {tag!r}")


def dumps_compact(value: Any) -> bytes:
    """Compact JSON of a book's part: orjson, byte-equal to the json.dumps
    below (compact, raw UTF-8, same escapes) and several times faster; json
    handles what orjson refuses (ints beyond 64 bits, lone surrogates), with
    its own result or error. Parts encoded apart join to the whole's bytes."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def pack(state: dict[str, Any], seen: SeenIds) -> bytes:
    """`state` holds every field of STATE_FIELDS (and nothing else)."""
    if len(state) != len(STATE_FIELDS):
        raise BookCodecError(f"book state fields {sorted(state)} are not {sorted(STATE_FIELDS)}")
    try:
        body = dumps_compact([state[name] for name in STATE_FIELDS])
    except KeyError as exc:
        raise BookCodecError(f"book state lacks {exc}") from exc
    return _framed(body, seen)


def _framed(body: bytes, seen: SeenIds) -> bytes:
    """Header, state JSON and seen ids (one copy of each part). Version 4
    only for a book with sealed days: after the JSON, the length of `blob`,
    then `blob` and `sealed`; every other book stays version 3."""
    if seen.sealed:
        return b"".join((_HEADER.pack(MAGIC, _V4, len(body)), body, _OPEN_LENGTH.pack(len(seen.blob)),
                         seen.blob, seen.sealed))
    return b"".join((_HEADER.pack(MAGIC, VERSION, len(body)), body, seen.blob))


_SPLICED_AT = STATE_FIELDS.index("p")


def pack_spliced(head: list[Any], items: list[bytes], tail: list[Any], seen: SeenIds) -> bytes:
    """`pack` of the fields `head`, then "p" (the pending events, each
    item already dumps_compact of one), then `tail`, byte for byte: a book's
    pending events are encoded once each, not at every pack of the book."""
    if len(head) != _SPLICED_AT or len(tail) != len(STATE_FIELDS) - _SPLICED_AT - 1:
        raise BookCodecError(f"a spliced book needs {_SPLICED_AT} fields before its pending events"
                             f" and {len(STATE_FIELDS) - _SPLICED_AT - 1} after, got {len(head)} and {len(tail)}")
    head_json, tail_json = dumps_compact(head), dumps_compact(tail)
    body = b"".join((head_json[:-1], b",[", b",".join(items), b"],", tail_json[1:]))
    return _framed(body, seen)


def unpack(data: bytes) -> tuple[dict[str, Any], SeenIds]:
    if len(data) < _HEADER.size:
        raise BookCodecError("truncated book")
    magic, version, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BookCodecError("not an EngineerBook")
    if version not in (VERSION, _V4, _V2, _V1):
        raise BookCodecError(f"unsupported book version {version}")
    end = _HEADER.size + length
    if end > len(data):
        raise BookCodecError("truncated book")
    try:
        state = json.loads(data[_HEADER.size:end])
    except ValueError as exc:
        raise BookCodecError(f"corrupt book state: {exc}") from exc
    if version in (VERSION, _V4):
        if not isinstance(state, list) or len(state) != len(STATE_FIELDS):
            raise BookCodecError(f"corrupt book state: not an array of {len(STATE_FIELDS)} fields")
        state = dict(zip(STATE_FIELDS, state, strict=True))
    elif not isinstance(state, dict):
        raise BookCodecError(f"corrupt book state: a version {version} book holds an object")
    if version == _V1:
        return state, SeenIds.from_v1(data[end:])
    if version == _V4:
        if end + _OPEN_LENGTH.size > len(data):
            raise BookCodecError("truncated book")
        (open_length,) = _OPEN_LENGTH.unpack_from(data, end)
        at = end + _OPEN_LENGTH.size
        if at + open_length > len(data):
            raise BookCodecError("truncated book")
        return state, SeenIds(data[at:at + open_length], data[at + open_length:])
    return state, SeenIds(data[end:])


def split_sealed(data: bytes) -> tuple[bytes, bytes]:
    """A packed book -> (the same book as version 3 with only its unsealed
    ids, its sealed ids): what the changelog keeps in the book's own record,
    and what it keeps in the records of its sealed days. A book without
    sealed days is returned as it is, with b"". No JSON is parsed."""
    if len(data) < _HEADER.size:
        raise BookCodecError("truncated book")
    magic, version, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BookCodecError("not an EngineerBook")
    if version != _V4:
        return data, b""
    end = _HEADER.size + length
    if end + _OPEN_LENGTH.size > len(data):
        raise BookCodecError("truncated book")
    (open_length,) = _OPEN_LENGTH.unpack_from(data, end)
    at = end + _OPEN_LENGTH.size
    view = memoryview(data)  # slices without copies: the head is copied once, by the join
    return (b"".join((_HEADER.pack(MAGIC, VERSION, length), view[_HEADER.size:end], view[at:at + open_length])),
            data[at + open_length:])


def join_sealed(data: bytes, sealed: bytes) -> bytes:
    """split_sealed's inverse: a version 3 book and sorted sealed ids (b"":
    the book as it is)."""
    if not sealed:
        return data
    if len(sealed) % RECORD:
        raise BookCodecError("sealed ids are not a whole number of records")
    magic, version, length = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise BookCodecError(f"sealed ids join a version {VERSION} book, not version {version}")
    end = _HEADER.size + length
    return b"".join((_HEADER.pack(MAGIC, _V4, length), data[_HEADER.size:end], _OPEN_LENGTH.pack(len(data) - end),
                     data[end:], sealed))
