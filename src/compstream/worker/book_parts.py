"""A large book in the changelog as a head and parts (book_changelog.py
decides when; this module is the layout).

The head (version 2, key: the engineer's id) holds the book's state without
its pending events and seen ids (a version 3 book), and a manifest of parts.
A part holds a piece of one *unit* of the book, under the key
`engineer \x1f <kind><scale>.<index>.<part>.<digest>`:

- `d0.<day>`: the sealed ids of a day (book_codec.SeenIds.sealed);
- `b<bits>.<k>`: the unsealed ids whose digest's first `bits` bits are k;
  digests are uniform, so a new id changes one bucket;
- `p<scale>.<slot>`: the pending events of a slot of event time 2**scale
  minutes wide (slots counted from year 1), as a JSON array of their
  compact forms.

`bits` and `scale` are per book, chosen so that a write's cost -- the parts
it rewrites plus the manifest it lists (16 B a part) -- stays small as the
book grows (`bucket_bits`, `slot_scale`); when one moves, every unit of that
kind is rewritten once. A unit's content is cut into parts of at most
PART_BYTES_MAX, so no record of a book reaches the broker's 1 MiB limit
however large the book grows in memory (COMPSTREAM_BOOK_BYTES_MAX bounds
that). A write rewrites only the units that changed: the slots that gained a
pending event, the buckets that gained an id, the sealed days that changed.
A slot's part is not rewritten when its events become final: restore keeps
only the events dated at or after the head's watermark, and a slot wholly
before it leaves the manifest.

Why: under a live load a busy engineer's pending usage is most of the book
(~110 B an event against 16 B of id), and one record per book rewrote all of
it at every batch that touched the book, and capped it at one record.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import orjson

from compstream.domain.book import EngineerBook
from compstream.domain.book_codec import (
    RECORD,
    BookCodecError,
    SeenIds,
    event_from_compact,
    pack,
    record_days,
    records_of_days,
    to_us,
    unpack,
)
from compstream.domain.events import EventError, event_sort_key

PART_BYTES_MAX = 512 * 1024
# A book this large is written as a head and parts; one written so goes back
# to a single record only below PARTS_BYTES_MIN (no flapping at the line).
SPLIT_BYTES_MIN = 64 * 1024
PARTS_BYTES_MIN = 16 * 1024
# Buckets near this size: a new id rewrites one of them, the head lists them
# all (15 B each); the bucket count moves when they pass half or twice it,
# rewriting every bucket (amortized, ~a byte per byte of ids added).
BUCKET_BYTES_TARGET = 2048
BUCKET_BITS_MAX = 8
HEAD_VERSION = 2
# Pending slots are 2**scale minutes wide, 2 minutes to ~17 hours: slot
# numbers from year 1 then fit 32 bits.
SLOT_SCALE_MIN, SLOT_SCALE_MAX = 1, 10
_MINUTE_US = 60_000_000
_YEAR_1_US = to_us(datetime.min.replace(tzinfo=timezone.utc))
_ENTRY_BYTES = 16
_HEAD = struct.Struct(">2sBI")  # magic, version, entries
_ENTRY = struct.Struct(">cBIH8s")  # kind, scale, index, part, digest of the part
SEALED, BUCKET, PENDING = b"d", b"b", b"p"

Unit = tuple[bytes, int, int]  # (kind, scale, index)


class BookPartsError(ValueError):
    pass


@dataclass(slots=True)
class BookParts:
    """What the processor hands the changelog for a large book, taken right
    after it was packed. Reads `book` itself: valid only until the book is
    next changed (the core writes the records in the same step)."""

    book: EngineerBook
    book_bytes: int  # the packed book's length
    state: bytes  # book.state_bytes()
    lateness_us: int  # the worker's: about the span of time the pending events cover
    changed_days: set[int]  # sealed days changed since the last write
    changed_times: list[datetime] | None  # book.take_changed_times() (None: all)
    changed_buckets: set[int] | None  # book.seen.take_changed_buckets(): first digest bytes (None: all)


def part_key(engineer: str, unit: Unit, part: int, digest: bytes, sep: str) -> str:
    kind, scale, index = unit
    return f"{engineer}{sep}{kind.decode()}{scale}.{index}.{part}.{digest.hex()}"


def digest_of(content: bytes) -> bytes:
    return hashlib.blake2b(content, digest_size=8).digest()


def cut_records(content: bytes) -> list[bytes]:
    """Seen-id records in pieces of at most PART_BYTES_MAX (whole records)."""
    step = PART_BYTES_MAX // RECORD * RECORD
    return [content[at:at + step] for at in range(0, len(content), step)] or [b""]


def cut_items(items: list[bytes]) -> list[bytes]:
    """JSON items in arrays of at most PART_BYTES_MAX bytes (an item larger
    than that alone is an error: a book's event is a few hundred bytes)."""
    if sum(map(len, items)) + len(items) + 1 <= PART_BYTES_MAX:  # the usual slot: one part
        return [b"[" + b",".join(items) + b"]"]
    out: list[bytes] = []
    chunk: list[bytes] = []
    size = 2
    for item in items:
        if len(item) + 3 > PART_BYTES_MAX:
            raise BookPartsError(f"a pending event of {len(item)} bytes exceeds a part ({PART_BYTES_MAX})")
        if chunk and size + len(item) + 1 > PART_BYTES_MAX:
            out.append(b"[" + b",".join(chunk) + b"]")
            chunk, size = [], 2
        chunk.append(item)
        size += len(item) + 1
    out.append(b"[" + b",".join(chunk) + b"]")
    return out


def bucket_bits(blob_bytes: int, bits_old: int | None) -> int:
    """How many leading bits of the digest pick an id's bucket: buckets near
    BUCKET_BYTES_TARGET; `bits_old` is kept while its buckets are within a
    factor 2 of it (every bucket is rewritten when it moves)."""
    if bits_old is not None and BUCKET_BYTES_TARGET // 2 <= blob_bytes >> bits_old <= BUCKET_BYTES_TARGET * 2:
        return bits_old
    bits = 0
    while bits < BUCKET_BITS_MAX and blob_bytes >> bits > BUCKET_BYTES_TARGET:
        bits += 1
    return bits


def slot_scale(pending_bytes: int, lateness_us: int, scale_old: int | None) -> int:
    """The pending slots' width, 2**scale minutes. A batch's new events of a
    live book fall in its latest slot, which it rewrites (on average half a
    slot: bytes a minute * width / 2), and the head lists every slot
    (16 B * lateness / width): the sum is least at width sqrt(32 * lateness
    / bytes a minute) = lateness * sqrt(32 / pending bytes). `scale_old` is
    kept within a factor 2 of that (a new scale rewrites every slot)."""
    lateness_min = max(1.0, lateness_us / _MINUTE_US)
    width = lateness_min * math.sqrt(2 * _ENTRY_BYTES / max(1, pending_bytes))
    if scale_old is not None and width / 2 <= 2 ** scale_old <= width * 2:
        return scale_old
    return min(SLOT_SCALE_MAX, max(SLOT_SCALE_MIN, round(math.log2(max(width, 1.0)))))


def slot_of(t: datetime, scale: int) -> int:
    """The slot (2**scale minutes wide, counted from year 1) of time t."""
    return (to_us(t) - _YEAR_1_US) // (_MINUTE_US << scale)


def pending_slots(book: EngineerBook, scale: int, slots: set[int] | None) -> dict[int, list[bytes]]:
    return book.pending_slots(_MINUTE_US << scale, _YEAR_1_US, slots)


def bucket_of(blob: bytes | bytearray, bits: int, k: int) -> bytes:
    """The records of sorted `blob` whose digest's first `bits` bits are k."""
    shift = 8 - bits
    return bytes(blob[_bound(blob, k << shift) * RECORD:_bound(blob, (k + 1) << shift) * RECORD])


def _bound(blob: bytes | bytearray, first: int) -> int:
    """Index of the first record whose digest's first byte is >= first."""
    if first > 255:
        return len(blob) // RECORD
    key = bytes([first])
    lo, hi = 0, len(blob) // RECORD
    while lo < hi:
        mid = (lo + hi) >> 1
        if blob[mid * RECORD:mid * RECORD + 1] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def plan(parts: BookParts, old: Mapping[Unit, object]) -> tuple[list[Unit], dict[Unit, list[bytes]]]:
    """(every unit the book has now, in order; the parts of those whose
    content may differ from what `old` -- the manifest written last -- lists
    for them). A unit not in the second keeps its old parts. A slot wholly
    before the watermark leaves; one the watermark is inside keeps its part
    (restore drops its final events); only changed slots are cut again."""
    book, seen = parts.book, parts.book.seen
    fresh = not old
    units: set[Unit] = {(SEALED, 0, d) for d in seen.sealed_days}
    due: dict[Unit, list[bytes]] = {}
    days = {d for d in seen.sealed_days if fresh or d in parts.changed_days or (SEALED, 0, d) not in old}
    for day, content in (records_of_days(seen.sealed, days) if days else {}).items():
        if not content:
            raise BookPartsError(f"sealed day {day} holds no ids")
        due[(SEALED, 0, day)] = cut_records(content)
    blob = seen.blob
    old_buckets = [u for u in old if u[0] == BUCKET]
    bits_old = old_buckets[0][1] if old_buckets else None
    bits = bucket_bits(len(blob), bits_old)
    changed = parts.changed_buckets
    if fresh or changed is None or bits != bits_old:
        wanted: Iterable[int] = range(1 << bits)
    else:
        units.update(old_buckets)
        wanted = {first >> (8 - bits) for first in changed}
    for k in wanted:
        unit = (BUCKET, bits, k)
        content = bucket_of(blob, bits, k)
        if content:
            units.add(unit)
            due[unit] = cut_records(content)
        else:
            units.discard(unit)
    old_slots = [u for u in old if u[0] == PENDING]
    scale_old = old_slots[0][1] if old_slots else None
    pending_bytes = parts.book_bytes - len(parts.state) - len(blob) - len(seen.sealed)
    scale = slot_scale(pending_bytes, parts.lateness_us, scale_old)
    times = parts.changed_times
    if fresh or times is None or scale != scale_old:
        fill = pending_slots(book, scale, None)
    else:
        watermark = book.watermark
        first = None if watermark is None else slot_of(watermark, scale)
        units.update(u for u in old_slots if first is None or u[2] >= first)
        slots = {slot_of(t, scale) for t in times}
        units.difference_update((PENDING, scale, slot) for slot in slots)
        fill = pending_slots(book, scale, slots)
    for slot, items in fill.items():
        unit = (PENDING, scale, slot)
        units.add(unit)
        due[unit] = cut_items(items)
    return sorted(units), due


def entry(unit: Unit, part: int, digest: bytes) -> bytes:
    """A part's manifest entry in a head."""
    return _ENTRY.pack(unit[0], unit[1], unit[2], part, digest)


def pack_head(count: int, entries: list[bytes], state: bytes, magic: bytes) -> bytes:
    """A head of `count` manifest entries (packed, in unit and part order)."""
    return b"".join((_HEAD.pack(magic, HEAD_VERSION, count), *entries, state))


def parse_head(engineer: str, value: bytes) -> tuple[list[tuple[bytes, int, int, int, bytes]], bytes]:
    """A version 2 head's manifest [(kind, scale, index, part, digest)] and its state."""
    if len(value) < _HEAD.size:
        raise BookPartsError(f"{engineer}'s head record is truncated")
    _magic, version, n = _HEAD.unpack_from(value)
    if version != HEAD_VERSION:
        raise BookPartsError(f"{engineer}'s head record has version {version}, not {HEAD_VERSION}")
    at = _HEAD.size + n * _ENTRY.size
    if at > len(value):
        raise BookPartsError(f"{engineer}'s head record is truncated")
    return [_ENTRY.unpack_from(value, _HEAD.size + i * _ENTRY.size) for i in range(n)], value[at:]


def assemble(engineer: str, state: bytes, units: dict[Unit, list[bytes]]) -> bytes:
    """The packed book (as the core holds it) from a head's state and the
    content of each unit's parts, in part order. Pending events dated before
    the state's watermark were final when the head was written: left out."""
    try:
        fields, seen = unpack(state)
    except BookCodecError as exc:
        raise BookPartsError(f"{engineer}'s head holds no book: {exc}") from exc
    if fields.get("p") or len(seen):
        raise BookPartsError(f"{engineer}'s head holds pending events or ids of its own")
    watermark_us = fields.get("w")
    sealed: list[bytes] = []
    unsealed: list[bytes] = []
    pending = []
    for (kind, scale, index), contents in sorted(units.items()):
        name = f"{kind.decode(errors='replace')}{scale}.{index}"
        if kind == PENDING:
            if not SLOT_SCALE_MIN <= scale <= SLOT_SCALE_MAX:
                raise BookPartsError(f"{engineer}'s pending slot {name} has a scale out of range")
            for content in contents:
                try:
                    for c in orjson.loads(content):
                        event = event_from_compact(engineer, c)
                        t = event.event_time
                        if slot_of(t, scale) != index:
                            raise BookPartsError(f"{engineer}'s pending slot {name} holds an event of another slot")
                        if watermark_us is None or to_us(t) >= watermark_us:
                            pending.append((event_sort_key(event), c))
                except (orjson.JSONDecodeError, BookCodecError, EventError, TypeError, IndexError) as exc:
                    raise BookPartsError(f"{engineer}'s pending slot {name} is corrupt: {exc!r}") from exc
            continue
        content = b"".join(contents)
        if len(content) % RECORD:
            raise BookPartsError(f"{engineer}'s unit {name} is not a whole number of id records")
        if kind == SEALED:
            if set(record_days(content)) != {index}:
                raise BookPartsError(f"{engineer}'s sealed day {index} holds ids of other days")
            sealed.append(content)
        elif kind == BUCKET:
            ends = (content[0], content[-RECORD]) if content else ()  # sorted: both ends tell
            if not ends or scale > BUCKET_BITS_MAX or any(first >> (8 - scale) != index for first in ends):
                raise BookPartsError(f"{engineer}'s id bucket {name} holds ids of another bucket")
            unsealed.append(content)
        else:
            raise BookPartsError(f"{engineer}'s head lists a part of unknown kind {kind!r}")
    pending.sort(key=_first)
    fields["p"] = [c for _, c in pending]
    ids = _sorted_records(unsealed)
    return pack(fields, SeenIds(ids, _sorted_records(sealed)))


def _sorted_records(runs: Iterable[bytes]) -> bytes:
    blob = b"".join(runs)
    records = [blob[at:at + RECORD] for at in range(0, len(blob), RECORD)]
    records.sort()
    return b"".join(records)


def _first(item: tuple[Any, Any]) -> Any:
    return item[0]
