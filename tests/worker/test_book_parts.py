"""Large books in the changelog as a head and parts (worker/book_parts.py):
what is written restores to the very bytes the core holds, after every
write and after any prefix of one; a busy book's write costs the hour and
the bucket its new event joined, not the book; no record outgrows a part."""

from __future__ import annotations

import random
from contextlib import contextmanager
from datetime import datetime, timedelta
from unittest.mock import patch

import orjson
import pytest

from compstream.domain import book as book_module
from compstream.domain.book import EngineerBook
from compstream.domain.events import Usage
from compstream.synth import START
from compstream.worker import book_parts
from compstream.worker.book_changelog import HEAD_MAGIC, BookChangelog, BookChangelogError, is_segment_key
from compstream.worker.book_parts import BookParts, cut_items, cut_records
from compstream.worker.core.ports import OutRecord
from worker.changelog_model import TOPIC, Changelog

LATENESS = timedelta(hours=2)
LATENESS_US = 2 * 3600 * 10**6


def _usage(i: int, at: datetime) -> Usage:
    return Usage(f"usage-{i:06d}", "e", "openai", "gpt-4o", at, 1200 + i % 97, 30, 0, 0, 1000 + i)


def _write(log: BookChangelog, book: EngineerBook) -> tuple[bytes, list[OutRecord]]:
    """What the processor and the core do with a touched book."""
    data = book.to_bytes()
    seen = book.seen
    changed_days = seen.take_changed_days() if seen.sealed_days else set()
    parts = None
    if len(data) >= book_parts.PARTS_BYTES_MIN:
        parts = BookParts(book, len(data), book.state_bytes(), LATENESS_US, changed_days, book.take_changed_times(),
                          seen.take_changed_buckets())
    return data, log.records("e", data, 0, frozenset(seen.sealed_days), changed_days, parts)


@contextmanager
def small_parts(split: int = 4096, parts_min: int = 1024, part: int = 2048, seal: int = 2, bucket: int = 128):
    """Thresholds small enough for a test book to cross them, and cut."""
    with patch.object(book_parts, "SPLIT_BYTES_MIN", split), \
            patch.object(book_parts, "BUCKET_BYTES_TARGET", bucket), \
            patch.object(book_parts, "PARTS_BYTES_MIN", parts_min), \
            patch.object(book_parts, "PART_BYTES_MAX", part), \
            patch.object(book_module, "SEAL_RECORDS_MIN", seal):
        yield


def test_every_write_and_every_prefix_of_one_restores_a_whole_book():
    rng = random.Random(11)
    book, log, changelog = EngineerBook.empty("e"), BookChangelog(TOPIC), Changelog()
    t, before, split_writes, unit_kinds, bucket_bits = START, None, 0, set(), set()
    with small_parts():
        for i in range(700):  # ~4 days; bursts, quiet hours, late and very late events
            t += timedelta(minutes=rng.choice([0, 1, 2, 5, 20, 90]))
            late = timedelta(minutes=rng.randint(1, 100)) if rng.random() < 0.2 else timedelta()
            late += timedelta(hours=rng.randint(3, 30)) if rng.random() < 0.03 else timedelta()
            book.ingest(_usage(i, t - late), t - LATENESS)
            if rng.random() < 0.4:
                continue
            data, records = _write(log, book)
            heads = [r for r in records if r.key == b"e" and r.value is not None]
            split_writes += heads[0].value[:3] == HEAD_MAGIC + b"\x02"
            unit_kinds |= {r.key.split(b"\x1f")[1][:1] for r in records if is_segment_key(r.key.decode())}
            bucket_bits |= {scale for kind, scale, _ in log.split.get("e", {}) if kind == b"b"}
            for cut in range(len(records)):  # a crash after `cut` records of this write
                partial = changelog.copy()
                partial.apply(records[:cut])
                assert partial.restore()[1].get("e") in (before, data), f"write {i}: prefix {cut} restored neither"
            changelog.apply(records)
            restored_log, restored = changelog.restore()
            assert restored == {"e": data}
            assert restored_log.split == log.split and restored_log.manifests == log.manifests
            assert not restored_log.orphans
            assert all(len(v) <= 2048 for k, v in changelog.values.items() if is_segment_key(k))
            before = data
    assert split_writes > 100
    assert unit_kinds >= {b"b", b"p", b"d"}, unit_kinds
    assert len(bucket_bits) >= 3, bucket_bits  # the bucket count moved with the ids, every bucket rewritten


def test_a_busy_book_writes_its_head_and_the_slot_and_bucket_of_its_new_event():
    with small_parts(part=512 * 1024):
        book, t = EngineerBook.empty("e"), START
        for i in range(1500):  # one event every 20 s: ~8 h, most of it pending under 6 h lateness
            t += timedelta(seconds=20)
            book.ingest(_usage(i, t), t - timedelta(hours=6))
        log, changelog = BookChangelog(TOPIC), Changelog()
        data, records = _write(log, book)
        changelog.apply(records)
        t += timedelta(seconds=20)
        book.ingest(_usage(10**5, t), t - timedelta(hours=6))
        data, records = _write(log, book)
        written = [r for r in records if r.value is not None]
        kinds = sorted(r.key.split(b"\x1f")[1][:1] for r in written if r.key != b"e")
        assert kinds == [b"b", b"p"]  # the bucket of its id, the slot of its time
        assert sum(len(r.value) for r in written) < len(data) / 8
        units = {r.key.rsplit(b".", 2)[0] for r in written}  # engineer, kind, scale, index
        assert {r.key.rsplit(b".", 2)[0] for r in records if r.value is None} <= units  # only what those replace
        changelog.apply(records)
        assert changelog.restore()[1] == {"e": data}


def test_final_slots_leave_the_manifest_and_a_shrunk_book_is_one_record_again():
    with small_parts():
        book, t = EngineerBook.empty("e"), START
        for i in range(300):
            t += timedelta(minutes=1)
            book.ingest(_usage(i, t), t - LATENESS)
        log, changelog = BookChangelog(TOPIC), Changelog()
        changelog.apply(_write(log, book)[1])
        slots = {u for u in log.split["e"] if u[0] == b"p"}
        assert len(slots) >= 4
        # A new event, and the watermark a little further: same slot width,
        # the slots wholly before the watermark leave, the rest stay.
        t += timedelta(minutes=1)
        book.ingest(_usage(10**5, t), t - LATENESS + timedelta(minutes=20))
        changelog.apply(_write(log, book)[1])
        now = {u for u in log.split["e"] if u[0] == b"p"}
        [scale] = {u[1] for u in slots | now}
        first = book_parts.slot_of(t - LATENESS + timedelta(minutes=20), scale)
        assert now == {u for u in slots if u[2] >= first} | {(b"p", scale, book_parts.slot_of(t, scale))}
        assert now != slots and changelog.restore()[1]["e"] == book.to_bytes()
        book.advance(t)  # every pending event but the last (at t) becomes final
        changelog.apply(_write(log, book)[1])
        [(_, scale, slot)] = [u for u in log.split["e"] if u[0] == b"p"]
        assert slot == book_parts.slot_of(t, scale)
        assert changelog.restore()[1]["e"] == book.to_bytes()
        book.advance(t + timedelta(days=60))  # everything final, every usage id forgotten
        data, records = _write(log, book)
        changelog.apply(records)
        assert changelog.values == {"e": data} and data[:2] == b"CB" and not log.holds("e")


def test_no_record_of_a_book_far_over_a_megabyte_reaches_a_part():
    book, t = EngineerBook.empty("e"), START
    for i in range(12_000):  # 12,000 events in one hour of event time, all pending: ~1.4 MB
        book.ingest(_usage(i, t + timedelta(microseconds=i * 300_000)), t - LATENESS)
    log = BookChangelog(TOPIC)
    data, records = _write(log, book)
    assert len(data) > 1024 * 1024
    assert max(len(r.value) for r in records if r.value is not None) <= book_parts.PART_BYTES_MAX
    changelog = Changelog()
    changelog.apply(records)
    assert changelog.restore()[1] == {"e": data}


def test_missing_or_corrupt_parts_are_errors_that_name_the_part():
    with small_parts():
        book, t = EngineerBook.empty("e"), START
        for i in range(200):
            t += timedelta(minutes=1)
            book.ingest(_usage(i, t), t - LATENESS)
        changelog = Changelog()
        changelog.apply(_write(BookChangelog(TOPIC), book)[1])
        hour_key = next(k for k in changelog.values if is_segment_key(k) and "\x1fp" in k)
        broken = changelog.copy()
        del broken.values[hour_key]
        with pytest.raises(BookChangelogError, match="lacks"):
            broken.restore()
        broken = changelog.copy()
        broken.values[hour_key] = b"[]"
        with pytest.raises(BookChangelogError, match="does not hold"):
            broken.restore()


def test_cutting_keeps_whole_records_and_whole_events_under_the_part_size():
    with patch.object(book_parts, "PART_BYTES_MAX", 100):
        ids = bytes(range(16)) * 20
        pieces = cut_records(ids)
        assert b"".join(pieces) == ids and all(len(p) <= 100 and len(p) % 16 == 0 for p in pieces)
        items = [orjson.dumps(["u", f"id-{i}", i]) for i in range(40)]
        arrays = cut_items(items)
        assert all(len(a) <= 100 for a in arrays)
        assert [x for a in arrays for x in orjson.loads(a)] == [orjson.loads(i) for i in items]
        with pytest.raises(book_parts.BookPartsError):
            cut_items([b'"' + b"x" * 200 + b'"'])


def test_the_bucket_count_follows_the_ids_with_slack():
    bits = book_parts.bucket_bits
    target = book_parts.BUCKET_BYTES_TARGET
    assert [bits(n, None) for n in (0, target, target + 1, 20 * target, 1 << 30)] == [0, 0, 1, 5, 8]
    assert bits(4 * target, 1) == 1 and bits(target, 1) == 1  # within a factor 2 of the target: kept
    assert bits(4 * target + 2, 1) == 2 and bits(100 * target, 1) == 7 and bits(target // 4, 3) == 0


def test_the_slot_width_balances_the_slot_rewritten_against_the_manifest():
    scale = book_parts.slot_scale
    six_h, two_days = 6 * 3600 * 10**6, 48 * 3600 * 10**6
    # 6 h of ~75 KB an hour pending (15,000 usage events a day): ~3 min slots.
    assert scale(450_000, six_h, None) == 2
    # 48 h at 2,000 a day (~500 KB pending): ~23 min, 32-min slots; 48 h nearly empty: the widest.
    assert scale(500_000, two_days, None) == 5 and scale(100, two_days, None) == book_parts.SLOT_SCALE_MAX
    assert scale(10**9, six_h, None) == book_parts.SLOT_SCALE_MIN
    assert scale(450_000, six_h, 1) == 1  # 2 min: within a factor 2 of ~3 min, kept
    assert scale(450_000, six_h, 3) == 2  # 8 min: not
    assert scale(450_000, six_h, 5) == 2
    t = datetime(2026, 12, 7, 10, 3, tzinfo=START.tzinfo)
    assert book_parts.slot_of(t, 1) + 1 == book_parts.slot_of(t + timedelta(minutes=2), 1)
    assert book_parts.slot_of(datetime(1, 1, 1, tzinfo=START.tzinfo), 1) == 0


def test_event_times_far_from_now_have_slots_too():
    # Up to the last hours datetime holds: the widest slot ends past it.
    with small_parts():
        book = EngineerBook.empty("e")
        for i, year in enumerate([1001, 1969, 2026, 9999] * 30):
            at = datetime(year, 12, 31, 20, tzinfo=START.tzinfo) + timedelta(minutes=i)
            book.ingest(_usage(i, at), None)  # no watermark: all pending
        changelog = Changelog()
        data, records = _write(BookChangelog(TOPIC), book)
        assert any(b"\x1fp" in r.key for r in records)
        changelog.apply(records)
        assert changelog.restore()[1] == {"e": data}


def test_the_last_slot_datetime_holds_ends_past_it():
    book = EngineerBook.empty("e")
    at = datetime(9999, 12, 31, 23, tzinfo=START.tzinfo)
    book.ingest(_usage(1, at), None)
    slot = book_parts.slot_of(at, book_parts.SLOT_SCALE_MAX)  # ~17 h wide: its end is past year 9999
    assert list(book_parts.pending_slots(book, book_parts.SLOT_SCALE_MAX, None)) == [slot]
    assert list(book_parts.pending_slots(book, book_parts.SLOT_SCALE_MAX, {slot})) == [slot]


def test_a_large_book_keeps_its_waiting_late_decisions_in_its_slots():
    # A rebuild's book holds recorded late decisions (events.LateAt) among its
    # pending events, slotted by their watermark: a head-and-parts write
    # restores them, and they still apply when the watermark passes.
    from compstream.domain.events import LateAt

    with small_parts():
        book, t = EngineerBook.empty("e"), START
        for i in range(300):
            t += timedelta(minutes=1)
            late_under = (t + timedelta(minutes=30), i) if i % 25 == 0 else None
            book.ingest(_usage(i, t - timedelta(minutes=90)), t - LATENESS, late_under=late_under)
        waiting = [item for _, item in book.pending if type(item) is LateAt]
        assert waiting
        log, changelog = BookChangelog(TOPIC), Changelog()
        data, records = _write(log, book)
        assert any(is_segment_key(r.key.decode()) for r in records)  # written in parts
        changelog.apply(records)
        restored = EngineerBook.from_bytes(changelog.restore()[1]["e"])
        assert restored.to_bytes() == data
        assert [item for _, item in restored.pending if type(item) is LateAt] == waiting
        late_reports = [r for r in restored.advance(t + timedelta(hours=1)).reports if r.code == "late"]
        assert {r.event_id for r in late_reports} == {item.event_id for item in waiting}
