"""Books in the changelog as a head and segments (worker/book_changelog.py):
what is written restores to the very bytes the core holds, after every
write and after any prefix of one (the Faust engine writes without a
transaction); a busy book stops rewriting its sealed days."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from unittest.mock import patch

import pytest

from compstream.domain import book as book_module
from compstream.domain.book import EngineerBook
from compstream.domain.events import Usage
from compstream.synth import START
from compstream.worker.book_changelog import HEAD_MAGIC, BookChangelog, BookChangelogError, engineer_of, is_segment_key
from compstream.worker.core.ports import OutRecord
from worker.changelog_model import TOPIC, Changelog

LATENESS = timedelta(hours=2)


def _usage(i: int, at) -> Usage:
    return Usage(f"u{i}", "e", "openai", "gpt-4o", at, 10, 1, 0, 0, 1000 + i)


def _write(log: BookChangelog, book: EngineerBook) -> tuple[bytes, list[OutRecord]]:
    data = book.to_bytes()
    seen = book.seen
    return data, log.records("e", data, 0, frozenset(seen.sealed_days), seen.take_changed_days())


def _steady_book(events: int, every: timedelta) -> tuple[EngineerBook, datetime]:
    """A book of one usage event every `every`, on time; and the last one's time."""
    book, t = EngineerBook.empty("e"), START
    for i in range(events):
        t += every
        book.ingest(_usage(i, t), t - LATENESS)
    return book, t


@pytest.fixture
def seal_at_two():
    with patch.object(book_module, "SEAL_RECORDS_MIN", 2):
        yield


def test_every_write_and_every_prefix_of_one_restores_a_whole_book(seal_at_two):
    rng = random.Random(5)
    book, log, changelog = EngineerBook.empty("e"), BookChangelog(TOPIC), Changelog()
    t, before, heads = START, None, 0
    for i in range(400):  # ~5 days, a batch every few events
        t += timedelta(minutes=rng.randint(1, 40))
        late = timedelta(hours=rng.randint(3, 30)) if rng.random() < 0.05 else timedelta()  # late ids of sealed days
        book.ingest(_usage(i, t - late), t - LATENESS)
        if rng.random() < 0.3:
            continue
        data, records = _write(log, book)
        heads += any(r.value is not None and r.value[:2] == HEAD_MAGIC for r in records)
        for cut in range(len(records)):  # a crash after `cut` records of this write
            partial = Changelog()
            partial.values = dict(changelog.values)
            partial.apply(records[:cut])
            _, restored = partial.restore()
            assert restored.get("e") in (before, data), f"write {i}: a prefix of {cut} records restored neither book"
        changelog.apply(records)
        restored_log, restored = changelog.restore()
        assert restored == {"e": data}
        assert restored_log.manifests == log.manifests and not restored_log.orphans
        assert EngineerBook.from_bytes(restored["e"]).to_bytes() == data
        before = data
    assert heads > 100 and len(book.seen.sealed_days) >= 3


def test_a_busy_book_rewrites_its_head_not_its_sealed_days(seal_at_two):
    book, t = _steady_book(3 * 24 * 12, timedelta(minutes=5))  # 3 days
    log, changelog = BookChangelog(TOPIC), Changelog()
    data, records = _write(log, book)
    changelog.apply(records)
    assert len(book.seen.sealed_days) == 2 and len({r.key for r in records}) == 3  # 2 segments, 1 head
    t += timedelta(minutes=5)
    book.ingest(_usage(10**6, t), t - LATENESS)  # one more on-time event, the same day
    data, records = _write(log, book)
    assert [r.key for r in records] == [b"e"]
    # The head: the book without its sealed ids or their length field (4 B),
    # with a manifest (a 7-byte header and 10 B a sealed day).
    assert len(records[0].value) == len(data) - len(book.seen.sealed) - 4 + 7 + 10 * 2
    changelog.apply(records)
    assert changelog.restore()[1] == {"e": data}


def test_a_book_whose_sealed_days_are_forgotten_is_one_record_again(seal_at_two):
    book, t = _steady_book(200, timedelta(minutes=30))
    log, changelog = BookChangelog(TOPIC), Changelog()
    changelog.apply(_write(log, book)[1])
    assert sum(is_segment_key(k) for k in changelog.values) >= 3
    book.advance(t + timedelta(days=60))  # past the dedupe horizon: every usage id is forgotten
    data, records = _write(log, book)
    changelog.apply(records)
    assert changelog.values == {"e": data} and data[:2] == b"CB"
    assert not log.holds("e")


def test_a_listed_segment_missing_is_an_error_and_an_unlisted_one_is_deleted(seal_at_two):
    book, t = _steady_book(100, timedelta(hours=1))
    log, changelog = BookChangelog(TOPIC), Changelog()
    changelog.apply(_write(log, book)[1])
    segment = next(k for k in changelog.values if is_segment_key(k))
    assert engineer_of(segment) == "e"
    broken = Changelog()
    broken.values = {k: v for k, v in changelog.values.items() if k != segment}
    with pytest.raises(BookChangelogError, match="lacks"):
        broken.restore()
    stray = "e\x1f1.00000000000000ff"
    changelog.values[stray] = b"x" * 16  # a segment a crash left behind
    restored_log, restored = changelog.restore()
    assert restored_log.orphans == {"e": {stray}}
    book = EngineerBook.from_bytes(restored["e"])
    t += timedelta(hours=1)
    book.ingest(_usage(10**6, t), t - LATENESS)
    records = _write(restored_log, book)[1]
    assert OutRecord(TOPIC, stray.encode(), None, 0) in records
