"""How books map to records of the books changelog.

A book without sealed days (book_codec.SeenIds) is one record under its
engineer's id: its bytes as the core holds them. A book with sealed days is
a *head* under that key -- the book as version 3 with only its unsealed ids,
and a manifest of its sealed days -- plus one *segment* per sealed day with
that day's ids, keyed `engineer \\x1f day . digest-of-content`. A changed day
is written under a new key before the head that lists it, and the key it
replaces is deleted (a tombstone) after that head: whatever prefix of a
checkpoint's records a reader sees (the Faust engine writes them without a
transaction), its head lists only segments that are there. A segment no head
lists (a crash between a head and its tombstones) is deleted at the book's
next write.

Why: a busy engineer's book holds up to 30 days of usage ids (16 B each),
and every batch that touched it rewrote all of them. Measured in-process at
1,000 usage events a day per engineer, one batch a minute: 337 KB of
changelog per usage event after 18 days (bench/bench_changelog_growth.py);
with sealed days, a flat ~41 KB. A sealed day is written when it is sealed,
and again only if a late id joins it.

A book of book_parts.SPLIT_BYTES_MIN or more is written as a version 2 head and parts
instead (worker/book_parts.py): its pending events by slot of time, its
unsealed ids by bucket as well as its sealed days, so neither the size of one record
nor the bytes a write costs grow with the book. Same order: parts, head,
tombstones.
"""

from __future__ import annotations

import hashlib
import struct

from compstream.domain.book_codec import RECORD, join_sealed, record_days, records_of_days, split_sealed
from compstream.worker import book_parts
from compstream.worker.book_parts import BookParts, BookPartsError, Unit
from compstream.worker.core.ports import OutRecord, new_out_record

SEGMENT_SEP = "\x1f"  # event validation rejects control characters in engineer ids
HEAD_MAGIC = b"CS"
HEAD_VERSION = 1
_HEAD = struct.Struct(">2sBI")  # magic, version, entries in the manifest
_ENTRY = struct.Struct(">H8s")  # a sealed day, the digest of its segment


class BookChangelogError(ValueError):
    pass


def segment_key(engineer: str, day: int, digest: bytes) -> str:
    return f"{engineer}{SEGMENT_SEP}{day}.{digest.hex()}"


def is_segment_key(key: str) -> bool:
    return SEGMENT_SEP in key


def engineer_of(key: str) -> str:
    """The engineer a books changelog key (a book, a head or a segment) belongs to."""
    return key.split(SEGMENT_SEP, 1)[0]


def _digest(content: bytes) -> bytes:
    return hashlib.blake2b(content, digest_size=8).digest()


class BookChangelog:
    """The segments each engineer's head lists (and the unlisted ones), for
    the partitions a core holds: what a write must delete."""

    def __init__(self, topic: str):
        self.topic = topic
        self.manifests: dict[str, dict[int, str]] = {}  # engineer -> sealed day -> segment key
        self.packed: dict[str, bytes] = {}  # engineer -> its head's header and manifest, as last written
        self.orphans: dict[str, set[str]] = {}  # engineer -> segment keys no head lists
        # engineer -> unit -> (its parts' keys, their manifest entries)
        self.split: dict[str, dict[Unit, tuple[tuple[str, ...], bytes]]] = {}

    def holds(self, engineer: str) -> bool:
        """Whether a write of this engineer's book must look at segments."""
        return engineer in self.manifests or engineer in self.orphans or engineer in self.split

    def records(self, engineer: str, data: bytes, partition: int,
                sealed_days: frozenset[int], changed: set[int], parts: BookParts | None = None) -> list[OutRecord]:
        """The records that make `data` the engineer's book in the changelog.
        `sealed_days`: the book's sealed days; `changed`: those whose ids
        changed since its last write (SeenIds.take_changed_days). `parts`:
        given for every book of book_parts.PARTS_BYTES_MIN or more (the processor's)."""
        if parts is not None and (len(data) >= book_parts.SPLIT_BYTES_MIN or engineer in self.split):
            return self._split_records(engineer, partition, parts)
        if len(data) >= book_parts.SPLIT_BYTES_MIN:
            raise BookChangelogError(f"{engineer}'s book of {len(data)} bytes needs parts; none were given")
        gone = self.split.pop(engineer, None)
        if gone:  # one record again: its parts are deleted after it
            self.orphans.setdefault(engineer, set()).update(k for keys, _ in gone.values() for k in keys)
        head, sealed = split_sealed(data)
        key = engineer.encode()
        old = self.manifests.get(engineer)
        if old is not None and not changed and sealed and sealed_days == old.keys() and engineer not in self.orphans:
            # The usual write of a busy book: its sealed days as they were, only the head is new.
            return [new_out_record(self.topic, key, b"".join((self.packed[engineer], head)), partition)]
        old = self.manifests.pop(engineer, {})
        self.packed.pop(engineer, None)
        stale = self.orphans.pop(engineer, set())
        if not sealed:
            if sealed_days:
                raise BookChangelogError(f"{engineer}'s book has sealed days {sorted(sealed_days)} but no sealed ids")
            return [new_out_record(self.topic, key, data, partition)] + self._tombstones(
                stale | set(old.values()), partition)
        if not sealed_days:
            raise BookChangelogError(f"{engineer}'s book has sealed ids but no sealed days were given")
        due = {d for d in sealed_days if d in changed or d not in old}
        contents = records_of_days(sealed, due) if due else {}
        out: list[OutRecord] = []
        manifest: dict[int, str] = {}
        entries = []
        for day in sorted(sealed_days):
            content = contents.get(day)
            if content is None:
                name = old[day]
                digest = bytes.fromhex(name.rsplit(".", 1)[1])
            else:
                if not content:
                    raise BookChangelogError(f"{engineer}'s sealed day {day} holds no ids")
                digest = _digest(content)
                name = segment_key(engineer, day, digest)
                if name != old.get(day):
                    out.append(new_out_record(self.topic, name.encode(), content, partition))
            manifest[day] = name
            entries.append(_ENTRY.pack(day, digest))
        packed = b"".join((_HEAD.pack(HEAD_MAGIC, HEAD_VERSION, len(entries)), *entries))
        out.append(new_out_record(self.topic, key, b"".join((packed, head)), partition))
        listed = set(manifest.values())
        out += self._tombstones((stale | set(old.values())) - listed, partition)
        self.manifests[engineer] = manifest
        self.packed[engineer] = packed
        return out

    def _split_records(self, engineer: str, partition: int, parts: BookParts) -> list[OutRecord]:
        old = self.split.get(engineer, {})
        try:
            units, due = book_parts.plan(parts, old)
        except BookPartsError as exc:
            raise BookChangelogError(str(exc)) from exc
        out: list[OutRecord] = []
        manifest: dict[Unit, tuple[tuple[str, ...], bytes]] = {}
        for unit in units:
            contents = due.get(unit)
            if contents is None:
                manifest[unit] = old[unit]
                continue
            kept = old.get(unit, ((), b""))[0]
            names, entries = [], []
            for i, content in enumerate(contents):
                digest = book_parts.digest_of(content)
                name = book_parts.part_key(engineer, unit, i, digest, SEGMENT_SEP)
                if name not in kept:
                    out.append(new_out_record(self.topic, name.encode(), content, partition))
                names.append(name)
                entries.append(book_parts.entry(unit, i, digest))
            manifest[unit] = (tuple(names), b"".join(entries))
        head = book_parts.pack_head(sum(len(m[0]) for m in manifest.values()),
                                    [m[1] for m in manifest.values()], parts.state, HEAD_MAGIC)
        out.append(new_out_record(self.topic, engineer.encode(), head, partition))
        listed = {k for names, _ in manifest.values() for k in names}
        stale = self.orphans.pop(engineer, set()) | set(self.manifests.pop(engineer, {}).values())
        stale |= {k for names, _ in old.values() for k in names}
        self.packed.pop(engineer, None)
        out += self._tombstones(stale - listed, partition)
        self.split[engineer] = manifest
        return out

    def _tombstones(self, keys: set[str], partition: int) -> list[OutRecord]:
        return [new_out_record(self.topic, k.encode(), None, partition) for k in sorted(keys)]

    def restore(self, books: dict[str, bytes], segments: dict[str, bytes]) -> dict[str, bytes]:
        """`books`: the last value of each engineer's key in a changelog
        partition (books and heads); `segments`: the last value of each
        segment key there. Returns each engineer's book as the core holds it."""
        out: dict[str, bytes] = {}
        listed: set[str] = set()
        for engineer, value in books.items():
            if value[:2] != HEAD_MAGIC:
                out[engineer] = value
                continue
            if value[2:3] == bytes([book_parts.HEAD_VERSION]):
                out[engineer], split = self._restore_split(engineer, value, segments)
                self.split[engineer] = split
                listed |= {k for names, _ in split.values() for k in names}
                continue
            manifest: dict[int, str] = {}
            records: list[bytes] = []
            entries, head = _parse_head(engineer, value)
            for day, digest in entries:
                name = segment_key(engineer, day, digest)
                content = segments.get(name)
                if content is None:
                    raise BookChangelogError(f"{engineer}'s book lists segment {name!r}, which the changelog lacks")
                if len(content) % RECORD or _digest(content) != digest or set(record_days(content)) != {day}:
                    raise BookChangelogError(f"segment {name!r} does not hold day {day}'s ids it is listed for")
                records += [content[at:at + RECORD] for at in range(0, len(content), RECORD)]
                manifest[day] = name
            records.sort()
            out[engineer] = join_sealed(head, b"".join(records))
            self.manifests[engineer] = manifest
            self.packed[engineer] = value[:len(value) - len(head)]
            listed |= set(manifest.values())
        for name in segments.keys() - listed:
            self.orphans.setdefault(engineer_of(name), set()).add(name)
        return out

    def _restore_split(self, engineer: str, value: bytes,
                       segments: dict[str, bytes]) -> tuple[bytes, dict[Unit, tuple[tuple[str, ...], bytes]]]:
        try:
            entries, state = book_parts.parse_head(engineer, value)
            units: dict[Unit, list[bytes]] = {}
            names: dict[Unit, list[str]] = {}
            packed: dict[Unit, list[bytes]] = {}
            for kind, scale, index, part, digest in entries:
                unit = (kind, scale, index)
                name = book_parts.part_key(engineer, unit, part, digest, SEGMENT_SEP)
                content = segments.get(name)
                if content is None:
                    raise BookChangelogError(f"{engineer}'s book lists part {name!r}, which the changelog lacks")
                if book_parts.digest_of(content) != digest:
                    raise BookChangelogError(f"part {name!r} does not hold the content it is listed for")
                listed = names.setdefault(unit, [])
                if part != len(listed):
                    raise BookChangelogError(f"{engineer}'s head lists part {part} of {name!r} out of order")
                listed.append(name)
                packed.setdefault(unit, []).append(book_parts.entry(unit, part, digest))
                units.setdefault(unit, []).append(content)
            manifest = {u: (tuple(names[u]), b"".join(packed[u])) for u in names}
            return book_parts.assemble(engineer, state, units), manifest
        except BookPartsError as exc:
            raise BookChangelogError(str(exc)) from exc

    def forget(self, engineers: list[str]) -> None:
        for engineer in engineers:
            self.split.pop(engineer, None)
            self.manifests.pop(engineer, None)
            self.packed.pop(engineer, None)
            self.orphans.pop(engineer, None)


def _parse_head(engineer: str, value: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """A head's manifest [(day, digest)] and its version 3 book."""
    if len(value) < _HEAD.size:
        raise BookChangelogError(f"{engineer}'s head record is truncated")
    magic, version, n = _HEAD.unpack_from(value)
    if version != HEAD_VERSION:
        raise BookChangelogError(f"{engineer}'s head record has version {version}, not {HEAD_VERSION}")
    at = _HEAD.size + n * _ENTRY.size
    if n == 0 or at > len(value):
        raise BookChangelogError(f"{engineer}'s head record is truncated or lists no sealed day")
    return [_ENTRY.unpack_from(value, _HEAD.size + i * _ENTRY.size) for i in range(n)], value[at:]
